"""Configuration: the TOML file of DESIGN.md parsed once into a frozen ``Settings``.

This is the only module that reads configuration from the filesystem or the environment; every
other part of the signer gets its settings passed in. Every error names the offending key.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jwks.algorithms import Alg, parse_alg
from signer.config_checks import cross_check
from signer.config_table import Table
from signer.errors import ConfigError
from signer.eventloop import DEFAULT_EVENT_LOOP, EVENT_LOOPS, EventLoopKind
from signer.newfiles import check_private_file
from signer.store.redis_url import check_redis_url, is_redis_url
from signer.subjects import canonical_subject

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|m|h)\s*$")
# DESIGN.md (Access control): each kind is scoped to a ring or profile name, or ``*`` for all.
PERMISSION_KINDS = ("jwt:sign", "keys:admin", "sign:request", "sign:approve")
AUDIT_READ = "audit:read"
# Actors the audit log uses for the signer itself and for unauthenticated callers.
RESERVED_PRINCIPALS = frozenset({"system", "anonymous"})

DEFAULT_MAX_BODY_BYTES = 64 * 1024
# What a signing profile can sign (the kinds of signer.codesign.requests).
ARTIFACT_KINDS: tuple[str, ...] = ("blob", "container", "attestation")
DEFAULT_LISTEN = "127.0.0.1:8700"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Where and how the HTTP server listens."""

    host: str
    port: int
    default_ring: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    workers: int = 1  # processes sharing the listening socket
    event_loop: EventLoopKind = DEFAULT_EVENT_LOOP
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key, serve HTTPS
    tls_key: Path | None = None
    client_ca: Path | None = None  # PEM CA bundle; with it, client certificates authenticate


@dataclass(frozen=True, slots=True, kw_only=True)
class HsmSettings:
    """The PKCS#11 module, token and PIN (already resolved from its file or variable)."""

    module: str
    token_label: str
    pin: str = field(repr=False)
    softhsm2_conf: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """The state store: a SQLite file (one node) or a Redis server shared by replicas."""

    url: str = field(repr=False)  # a Redis URL may carry a password
    sqlite_path: Path | None  # set for sqlite: URLs, None for Redis
    prefix: str = "signer:"  # Redis: every key name starts with it, so deployments can share
    password: str | None = field(default=None, repr=False)  # Redis: from password_env


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRule:
    """M-of-group quorum for a destructive ring operation."""

    group: str
    required: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RingPolicy:
    """One ring's algorithm and lifecycle durations, all in seconds."""

    name: str
    alg: Alg
    rotation_period: int
    prepublish: int
    token_max_ttl: int
    jwks_max_age: int
    clock_skew: int
    retain: int
    allow_immediate_rotation: bool = False
    approvals: Mapping[str, ApprovalRule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """``count`` requests per ``per_seconds``."""

    count: int
    per_seconds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PrincipalSettings:
    """A caller: the SHA-256 of its bearer token and its scoped permissions."""

    name: str
    token_sha256: bytes = field(repr=False)
    permissions: tuple[str, ...]
    rate_limit: RateLimit | None = None
    cert_subject: str | None = None  # canonical RFC 4514 (``signer.subjects``)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSettings:
    """A named set of principals (approvers)."""

    name: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileSettings:
    """An artifact-signing profile."""

    name: str
    ring: str
    requesters: tuple[str, ...]
    approvers: str
    approvals_required: int
    subjects: tuple[str, ...]
    predicate_types: tuple[str, ...]
    max_subjects: int
    # What the profile signs (signer.codesign.requests.Kind values); all of them by default.
    kinds: tuple[str, ...] = ARTIFACT_KINDS


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditSettings:
    """Where committed audit records are streamed, if anywhere."""

    sink: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The whole configuration, loaded once by the CLI."""

    path: Path
    server: ServerSettings
    hsm: HsmSettings
    store: StoreSettings
    rings: tuple[RingPolicy, ...]
    principals: tuple[PrincipalSettings, ...]
    groups: tuple[GroupSettings, ...] = ()
    profiles: tuple[ProfileSettings, ...] = ()
    audit: AuditSettings = field(default_factory=AuditSettings)

    def ring(self, name: str) -> RingPolicy | None:
        """The policy of ring ``name``, if configured."""
        return next((r for r in self.rings if r.name == name), None)

    @property
    def artifact_rings(self) -> frozenset[str]:
        """Rings a signing profile uses: they sign artifacts only, never JWTs."""
        return frozenset(profile.ring for profile in self.profiles)


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the TOML file at ``path``; raise ``ConfigError`` naming the bad key.

    A config file every user may write is refused: whoever can change it can add a principal.
    """
    env = os.environ if environ is None else environ
    path = path.resolve()
    with contextlib.suppress(FileNotFoundError):  # reported below, with the path
        if path.stat().st_mode & 0o002:
            raise ConfigError(
                f"{path} is writable by every user; whoever can change it can add a principal "
                "(chmod o-w it)"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_settings(data, base=path.parent, path=path, environ=env)


def parse_settings(
    data: Mapping[str, Any], *, base: Path, path: Path, environ: Mapping[str, str]
) -> Settings:
    """Build ``Settings`` from parsed TOML; relative paths resolve against ``base``."""
    root = Table(data, "")
    rings = tuple(_ring(t) for t in root.tables("rings"))
    if not rings:
        raise ConfigError("rings: at least one [[rings]] table is required")
    _unique("rings", [r.name for r in rings])
    server = _server(root.table("server"), rings, base)
    hsm = _hsm(root.table("hsm"), base, environ)
    store = _store(root.table("store"), base, environ)
    principals = tuple(_principal(t) for t in root.tables("principals"))
    _unique("principals", [p.name for p in principals])
    _unique("principals token_sha256", [p.token_sha256.hex() for p in principals])
    _unique("principals cert_subject", [p.cert_subject for p in principals if p.cert_subject])
    groups = tuple(_group(t) for t in root.tables("groups"))
    _unique("groups", [g.name for g in groups])
    profiles = tuple(_profile(t) for t in root.tables("profiles"))
    _unique("profiles", [p.name for p in profiles])
    audit_table = root.table("audit")
    sink = audit_table.opt_str("sink")
    audit_table.done()
    root.done()
    settings = Settings(
        path=path,
        server=server,
        hsm=hsm,
        store=store,
        rings=rings,
        principals=principals,
        groups=groups,
        profiles=profiles,
        audit=AuditSettings(sink=(base / sink) if sink else None),
    )
    cross_check(settings)
    return settings


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{what}: duplicate {name!r}")
        seen.add(name)


def _name(table: Table, key: str = "name") -> str:
    name = table.text(key)
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{table.key(key)}: {name!r} must match {NAME_PATTERN.pattern}")
    return name


def _server(table: Table, rings: tuple[RingPolicy, ...], base: Path) -> ServerSettings:
    listen = table.text("listen", DEFAULT_LISTEN)
    host, sep, port_text = listen.rpartition(":")
    port_ok = port_text.isascii() and port_text.isdigit() and 0 <= int(port_text) < 65536
    if not sep or not host or not port_ok:
        raise ConfigError(f"server.listen: expected HOST:PORT, got {listen!r}")
    default_ring = table.text("default_ring", rings[0].name)
    if default_ring not in {r.name for r in rings}:
        raise ConfigError(f"server.default_ring: no ring named {default_ring!r}")
    max_body = table.integer("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    workers = table.integer("workers", 1)
    event_loop = _event_loop(table.text("event_loop", DEFAULT_EVENT_LOOP))
    tls = {key: table.opt_str(key) for key in ("tls_cert", "tls_key", "client_ca")}
    table.done()
    if (tls["tls_cert"] is None) != (tls["tls_key"] is None):
        raise ConfigError("server: set both server.tls_cert and server.tls_key, or neither")
    if tls["client_ca"] is not None and tls["tls_cert"] is None:
        raise ConfigError("server.client_ca needs server.tls_cert and server.tls_key")
    paths = {key: base / value for key, value in tls.items() if value is not None}
    for key, path in paths.items():
        if not path.is_file():
            raise ConfigError(f"server.{key}: {path} is not a file")
    host = host.strip("[]")
    return ServerSettings(
        host=host,
        port=int(port_text),
        default_ring=default_ring,
        max_body_bytes=max_body,
        workers=workers,
        event_loop=event_loop,
        tls_cert=paths.get("tls_cert"),
        tls_key=paths.get("tls_key"),
        client_ca=paths.get("client_ca"),
    )


def _event_loop(name: str) -> EventLoopKind:
    for kind in EVENT_LOOPS:
        if name == kind:
            return kind
    choices = " or ".join(repr(kind) for kind in EVENT_LOOPS)
    raise ConfigError(f"server.event_loop: expected {choices}, got {name!r}")


def _hsm(table: Table, base: Path, environ: Mapping[str, str]) -> HsmSettings:
    module = table.text("module")
    token_label = table.text("token_label")
    pin_file = table.opt_str("pin_file")
    pin_env = table.opt_str("pin_env")
    conf = table.opt_str("softhsm2_conf")
    table.done()
    if (pin_file is None) == (pin_env is None):
        raise ConfigError("hsm: set exactly one of hsm.pin_file or hsm.pin_env")
    if pin_file is not None:
        pin_path = base / pin_file
        try:
            check_private_file(pin_path, "hsm.pin_file")
            pin = pin_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"hsm.pin_file: cannot read {pin_path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"hsm.pin_file: {pin_path} is not UTF-8 text") from None
    else:
        assert pin_env is not None  # noqa: S101 -- narrowed by the exactly-one check above
        pin = environ.get(pin_env, "")
        if not pin:
            raise ConfigError(f"hsm.pin_env: environment variable {pin_env} is unset or empty")
    if not pin:
        raise ConfigError("hsm: the PIN is empty")
    return HsmSettings(
        module=module,
        token_label=token_label,
        pin=pin,
        softhsm2_conf=(base / conf) if conf else None,
    )


def _store(table: Table, base: Path, environ: Mapping[str, str]) -> StoreSettings:
    url = table.text("url")
    if url.startswith("sqlite:"):
        table.done()  # prefix and password_env are Redis settings: refused here as unknown
        rest = url.removeprefix("sqlite:").removeprefix("//")
        if not rest or rest == "/":
            raise ConfigError("store.url: sqlite URL has no file path")
        # Three slashes give an absolute path; two (or none) a path relative to the directory
        # that holds the config file.
        return StoreSettings(url=url, sqlite_path=base / rest)
    if is_redis_url(url):
        try:
            check_redis_url(url)
        except ValueError as exc:
            raise ConfigError(f"store.url: {exc}") from None
        prefix = table.opt_str("prefix") or "signer:"
        password_env = table.opt_str("password_env")
        table.done()
        password = None
        if password_env is not None:
            # As hsm.pin_env: a secret kept out of the file, for operators who template configs.
            password = environ.get(password_env, "")
            if not password:
                raise ConfigError(
                    f"store.password_env: environment variable {password_env} is unset or empty"
                )
        return StoreSettings(url=url, sqlite_path=None, prefix=prefix, password=password)
    raise ConfigError(
        "store.url: unsupported store; expected sqlite:///path/to/state.db, "
        "redis://host:6379/0, rediss://…, unix:///path/redis.sock or "
        "redis+sentinel://host:26379[,host2:26379]/service_name[/db]"
    )


def _ring(table: Table) -> RingPolicy:
    name = _name(table)
    try:
        alg = parse_alg(table.text("alg"))
    except ValueError as exc:
        raise ConfigError(f"{table.key('alg')}: {exc}") from None
    rotation_period = table.duration("rotation_period")
    prepublish = table.duration("prepublish")
    token_max_ttl = table.duration("token_max_ttl")
    jwks_max_age = table.duration("jwks_max_age", min(prepublish, 3600))
    clock_skew = table.duration("clock_skew", 30)
    retain = table.duration("retain", 30 * 86400)
    allow_immediate = table.flag("allow_immediate_rotation", default=False)
    approvals_table = table.table("approvals")
    approvals = {}
    for op in ("destroy", "reinstate"):
        rule = approvals_table.get(op)
        if rule is None:
            continue
        if not isinstance(rule, dict):
            raise ConfigError(f"{table.key('approvals')}.{op} must be {{group, required}}")
        rt = Table(rule, f"{table.key('approvals')}.{op}")
        approvals[op] = ApprovalRule(group=rt.text("group"), required=rt.integer("required"))
        rt.done()
    approvals_table.done()
    table.done()
    where = table.key
    # DESIGN.md invariants: a relying party's cached JWKS must already hold the next key when it
    # signs, so pre-publication must outlast the cache; and a period must leave room for it.
    if prepublish < jwks_max_age:
        raise ConfigError(
            f"{where('prepublish')} ({prepublish}s) must be >= {where('jwks_max_age')} "
            f"({jwks_max_age}s): relying parties could cache a JWKS without the next key"
        )
    if rotation_period <= prepublish:
        raise ConfigError(
            f"{where('rotation_period')} ({rotation_period}s) must be > "
            f"{where('prepublish')} ({prepublish}s)"
        )
    return RingPolicy(
        name=name,
        alg=alg,
        rotation_period=rotation_period,
        prepublish=prepublish,
        token_max_ttl=token_max_ttl,
        jwks_max_age=jwks_max_age,
        clock_skew=clock_skew,
        retain=retain,
        allow_immediate_rotation=allow_immediate,
        approvals=approvals,
    )


def _rate_limit(table: Table) -> RateLimit | None:
    text = table.opt_str("rate_limit")
    if text is None:
        return None
    match = _RATE.match(text)
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"{table.key('rate_limit')}: expected 'N/s', 'N/m' or 'N/h'")
    return RateLimit(count=int(match.group(1)), per_seconds={"s": 1, "m": 60, "h": 3600}[match[2]])


def _check_permission(perm: str, where: str) -> None:
    """Refuse a permission that is not one of the documented forms: a misspelt one would
    grant nothing without a word, and a broader wildcard (``keys:*``) more than anyone reads."""
    kind, _, resource = perm.rpartition(":")
    if perm == AUDIT_READ or (
        kind in PERMISSION_KINDS and (resource == "*" or NAME_PATTERN.match(resource))
    ):
        return
    forms = ", ".join(f"{k}:<name>" for k in PERMISSION_KINDS)
    raise ConfigError(
        f"{where}: unknown permission {perm!r}; permissions are {forms} (or <kind>:* for "
        f"every name) and {AUDIT_READ}"
    )


def _principal(table: Table) -> PrincipalSettings:
    name = _name(table)
    if name in RESERVED_PRINCIPALS:
        raise ConfigError(
            f"{table.key('name')}: {name!r} is reserved: the audit log names the signer itself "
            "'system' and unauthenticated callers 'anonymous'"
        )
    digest = table.text("token_sha256").lower()
    if not _HEX64.match(digest):
        raise ConfigError(f"{table.key('token_sha256')} must be 64 hex characters (SHA-256)")
    permissions = table.strings("permissions", [])
    for perm in permissions:
        _check_permission(perm, table.key("permissions"))
    subject = table.opt_str("cert_subject")
    if subject is not None:
        try:
            subject = canonical_subject(subject)
        except ValueError as exc:
            raise ConfigError(f"{table.key('cert_subject')}: {exc}") from None
    principal = PrincipalSettings(
        name=name,
        token_sha256=bytes.fromhex(digest),
        permissions=permissions,
        rate_limit=_rate_limit(table),
        cert_subject=subject,
    )
    table.done()
    return principal


def _group(table: Table) -> GroupSettings:
    group = GroupSettings(name=_name(table), members=table.strings("members"))
    table.done()
    return group


def _profile(table: Table) -> ProfileSettings:
    profile = ProfileSettings(
        name=_name(table),
        ring=table.text("ring"),
        requesters=table.strings("requesters"),
        approvers=table.text("approvers"),
        approvals_required=table.integer("approvals_required"),
        subjects=table.strings("subjects"),
        predicate_types=table.strings("predicate_types", []),
        max_subjects=table.integer("max_subjects", 64),
        kinds=_kinds(table),
    )
    table.done()
    return profile


def _kinds(table: Table) -> tuple[str, ...]:
    kinds = table.strings("kinds", list(ARTIFACT_KINDS))
    unknown = [kind for kind in kinds if kind not in ARTIFACT_KINDS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        raise ConfigError(
            f"{table.key('kinds')}: a non-empty list of distinct kinds from "
            f"{list(ARTIFACT_KINDS)}, got {list(kinds)}"
        )
    return kinds
