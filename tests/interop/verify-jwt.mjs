// Verifies JWTs with jose's createRemoteJWKSet, as a relying party would.
// stdin: one JSON object per line {"id", "token", "jwks_url"}
// stdout: one JSON object per line {"id", "ok", "kid"?, "error"?}
// argv[2]: cache max age in ms (the relying party's JWKS cache lifetime)
// argv[3]: cooldown in ms (minimum time between refetches on an unknown kid)
import { createRemoteJWKSet, jwtVerify } from "jose";
import { createInterface } from "node:readline";

const cacheMaxAge = Number(process.argv[2] ?? 600000);
const cooldownDuration = Number(process.argv[3] ?? 30000);
const sets = new Map();

function keySet(url) {
  if (!sets.has(url)) {
    sets.set(url, createRemoteJWKSet(new URL(url), { cacheMaxAge, cooldownDuration }));
  }
  return sets.get(url);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { id, token, jwks_url } = JSON.parse(line);
  try {
    const { protectedHeader } = await jwtVerify(token, keySet(jwks_url));
    process.stdout.write(JSON.stringify({ id, ok: true, kid: protectedHeader.kid }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ id, ok: false, error: String(error.code ?? error) }) + "\n");
  }
}
