// Verifies a keyed Sigstore bundle (v0.3) with @sigstore/verify, as an offline relying party would:
// the public key is trusted out of band and found by the bundle's hint; no transparency log
// entries, SCTs or timestamps are expected (all thresholds 0).
//
// usage: node verify-bundle.mjs BUNDLE.json KEY.pem HINT [--artifact FILE] [--digest SHA256HEX]
//   --artifact  the signed artifact: a message signature is verified over it (required for
//               message signatures) and its SHA-256 must equal the bundle's messageDigest; for a
//               DSSE bundle, a statement subject must carry its SHA-256
//   --digest    for a DSSE bundle without the artifact at hand: a subject must carry this SHA-256
// exit 0 only when the bundle verifies; otherwise print the reason to stderr and exit 1.
import { createHash, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import bundleLib from "@sigstore/bundle";
import verifyLib from "@sigstore/verify";

const { bundleFromJSON, assertBundleLatest } = bundleLib;
const { Verifier, toSignedEntity, toTrustMaterial } = verifyLib;

function parseArgs(argv) {
  const [bundlePath, keyPath, hint, ...rest] = argv;
  if (!bundlePath || !keyPath || !hint) {
    throw new Error("usage: verify-bundle.mjs BUNDLE.json KEY.pem HINT [--artifact F] [--digest HEX]");
  }
  const options = { bundlePath, keyPath, hint, artifact: undefined, digest: undefined };
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i] === "--artifact") options.artifact = rest[i + 1];
    else if (rest[i] === "--digest") options.digest = rest[i + 1];
    else throw new Error(`unknown option ${rest[i]}`);
  }
  return options;
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const bundle = bundleFromJSON(JSON.parse(readFileSync(options.bundlePath, "utf8")));
  assertBundleLatest(bundle);

  // An empty trusted root: no CAs, logs or TSAs. The one trusted key is named by the hint.
  const emptyRoot = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const spki = createPublicKey(readFileSync(options.keyPath, "utf8")).export({ type: "spki", format: "der" });
  const trust = toTrustMaterial(emptyRoot, { [options.hint]: { rawBytes: spki } });

  const artifact = options.artifact === undefined ? undefined : readFileSync(options.artifact);
  const artifactDigest = artifact === undefined ? options.digest : createHash("sha256").update(artifact).digest("hex");

  if (bundle.content.$case === "messageSignature") {
    if (artifact === undefined) throw new Error("a message signature needs --artifact");
    const claimed = Buffer.from(bundle.content.messageSignature.messageDigest.digest).toString("hex");
    if (claimed !== artifactDigest) {
      throw new Error(`messageDigest ${claimed} is not the artifact's sha256 ${artifactDigest}`);
    }
  }

  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(toSignedEntity(bundle, artifact));

  if (bundle.content.$case === "dsseEnvelope") {
    const envelope = bundle.content.dsseEnvelope;
    if (envelope.payloadType !== "application/vnd.in-toto+json") {
      throw new Error(`payload type ${envelope.payloadType} is not in-toto`);
    }
    const statement = JSON.parse(Buffer.from(envelope.payload).toString("utf8"));
    if (statement._type !== "https://in-toto.io/Statement/v1") throw new Error("not a Statement v1");
    if (artifactDigest !== undefined) {
      const digests = statement.subject.map((subject) => subject.digest.sha256);
      if (!digests.includes(artifactDigest)) {
        throw new Error(`no subject has sha256 ${artifactDigest}`);
      }
    }
  }
}

try {
  main();
  process.stdout.write("ok\n");
} catch (error) {
  process.stderr.write(`${error.code ?? error.name}: ${error.message}\n`);
  process.exit(1);
}
