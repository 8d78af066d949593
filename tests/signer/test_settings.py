"""Configuration parsing: the contract of DESIGN.md, and refusals that name the key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jwks.algorithms import Alg
from signer.errors import ConfigError
from signer.settings import load_settings

TOKEN_SHA = hashlib.sha256(b"t").hexdigest()

BASE = f"""
[server]
listen = "127.0.0.1:8700"
default_ring = "default"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "signer-dev"
pin_file = "hsm-pin"
softhsm2_conf = "softhsm2.conf"

[store]
url = "sqlite://state.db"

[[rings]]
name = "default"
alg = "ES256"
rotation_period = "30d"
prepublish = "2d"
token_max_ttl = "1h"

[[principals]]
name = "idp"
token_sha256 = "{TOKEN_SHA}"
permissions = ["jwt:sign:default"]
rate_limit = "200/s"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "hsm-pin").write_text("1234\n")
    (tmp_path / "hsm-pin").chmod(0o600)
    path = tmp_path / "signer.toml"
    path.write_text(text)
    return path


def test_contract_example_loads_with_defaults(tmp_path: Path) -> None:
    """Optional ring durations take DESIGN.md's defaults; relative paths resolve to the file."""
    settings = load_settings(write(tmp_path, BASE))
    ring = settings.rings[0]
    assert ring.alg is Alg.ES256
    assert ring.rotation_period == 30 * 86400
    assert ring.prepublish == 2 * 86400
    assert ring.jwks_max_age == 3600  # min(prepublish, 1h)
    assert ring.clock_skew == 30
    assert settings.hsm.pin == "1234"
    assert settings.hsm.softhsm2_conf == tmp_path / "softhsm2.conf"
    assert settings.store.sqlite_path == tmp_path / "state.db"
    assert settings.server.port == 8700
    assert settings.principals[0].rate_limit is not None
    assert settings.principals[0].rate_limit.count == 200


@pytest.mark.parametrize(("line", "kind"), [("", "uvloop"), ('event_loop = "asyncio"', "asyncio")])
def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for(
    tmp_path: Path, line: str, kind: str
) -> None:
    text = BASE.replace("[server]", f"[server]\n{line}", 1)
    assert load_settings(write(tmp_path, text)).server.event_loop == kind


def test_pin_never_appears_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, BASE))
    assert "1234" not in repr(settings)
    assert TOKEN_SHA not in repr(settings)


def test_absolute_sqlite_url(tmp_path: Path) -> None:
    text = BASE.replace('"sqlite://state.db"', f'"sqlite://{tmp_path}/abs.db"')
    assert load_settings(write(tmp_path, text)).store.sqlite_path == tmp_path / "abs.db"


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@redis.internal:6380/2",
        "unix:///run/redis/redis.sock?db=1",
        "redis+sentinel://:pw@s1:26379,s2:26379/signer-master/0",
    ],
)
def test_redis_urls_are_accepted(tmp_path: Path, url: str) -> None:
    text = BASE.replace('"sqlite://state.db"', f'"{url}"')
    store = load_settings(write(tmp_path, text)).store
    assert store.url == url
    assert store.sqlite_path is None
    assert store.prefix == "signer:"


def test_redis_prefix_and_password_from_environment(tmp_path: Path) -> None:
    text = BASE.replace(
        'url = "sqlite://state.db"',
        'url = "redis://10.0.0.5:6379/0"\nprefix = "acme:"\npassword_env = "REDIS_PW"',
    )
    store = load_settings(write(tmp_path, text), environ={"REDIS_PW": "s3cret"}).store
    assert (store.prefix, store.password) == ("acme:", "s3cret")
    assert "s3cret" not in repr(store)


def test_redis_password_in_the_url_never_appears_in_repr(tmp_path: Path) -> None:
    text = BASE.replace('"sqlite://state.db"', '"redis://:hunter2@10.0.0.5:6379/0"')
    assert "hunter2" not in repr(load_settings(write(tmp_path, text)))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"sqlite://state.db"', '"redis+sentinel://s1:26379"', "store.url: .*service_name"),
        ('"sqlite://state.db"', '"unix://redis.sock"', "store.url: .*absolute"),
        ('"sqlite://state.db"', '"sqlite://state.db"\nprefix = "x:"', "store.prefix"),
        ('"sqlite://state.db"', '"redis://h/0"\npassword_env = "UNSET"', "store.password_env"),
        ('"sqlite://state.db"', '"redis://h/0"\nprefix = ""', "store.prefix"),
    ],
)
def test_bad_store_settings_are_refused_precisely(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, BASE.replace(old, new, 1)), environ={})


def test_pin_from_environment(tmp_path: Path) -> None:
    text = BASE.replace('pin_file = "hsm-pin"', 'pin_env = "SIGNER_HSM_PIN"')
    settings = load_settings(write(tmp_path, text), environ={"SIGNER_HSM_PIN": "9999"})
    assert settings.hsm.pin == "9999"


def test_eddsa_ring_accepts_rfc9864_name(tmp_path: Path) -> None:
    text = BASE.replace('alg = "ES256"', 'alg = "Ed25519"')
    assert load_settings(write(tmp_path, text)).rings[0].alg is Alg.EDDSA


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('prepublish = "2d"', 'prepublish = "2d"\njwks_max_age = "3d"', "rings[0].prepublish"),
        ('rotation_period = "30d"', 'rotation_period = "2d"', "rings[0].rotation_period"),
        ('token_max_ttl = "1h"', 'token_max_ttl = "-5s"', "rings[0].token_max_ttl"),
        ('token_max_ttl = "1h"', "token_max_ttl = 0", "rings[0].token_max_ttl"),
        ('alg = "ES256"', 'alg = "HS256"', "rings[0].alg"),
        ('default_ring = "default"', 'default_ring = "nope"', "server.default_ring"),
        ('listen = "127.0.0.1:8700"', 'listen = "8700"', "server.listen"),
        ('pin_file = "hsm-pin"', 'pin_file = "missing"', "hsm.pin_file"),
        (f'token_sha256 = "{TOKEN_SHA}"', 'token_sha256 = "abc"', "principals[0].token_sha256"),
        ('rate_limit = "200/s"', 'rate_limit = "fast"', "principals[0].rate_limit"),
        ('["jwt:sign:default"]', '["jwt sign"]', "principals[0].permissions"),
        ('url = "sqlite://state.db"', 'url = "mysql://x"', "store.url"),
        ('name = "default"', 'name = "default"\nperiod = "1d"', "rings[0].period"),
        ("[server]", "[server]\nlisten_port = 1", "server.listen_port"),
        ("[server]", '[server]\nevent_loop = "trio"', "server.event_loop"),
        ("[server]", "[server]\nevent_loop = 1", "server.event_loop"),
    ],
)
def test_bad_config_is_refused_naming_the_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in BASE
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, BASE.replace(old, new, 1)))


def test_missing_rings_refused(tmp_path: Path) -> None:
    text = BASE.split("[[rings]]", maxsplit=1)[0] + BASE.split('token_max_ttl = "1h"')[1]
    with pytest.raises(ConfigError, match="rings"):
        load_settings(write(tmp_path, text))


def test_group_member_must_be_a_principal(tmp_path: Path) -> None:
    text = BASE + '\n[[groups]]\nname = "g"\nmembers = ["idp", "ghost"]\n'
    with pytest.raises(ConfigError, match=r"groups\[0\].members: no principal named 'ghost'"):
        load_settings(write(tmp_path, text))


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(write(tmp_path, "[server\n"))


@pytest.mark.parametrize(
    "permission",
    ["jwt:sign:default", "jwt:sign:*", "keys:admin:r-1", "sign:request:*", "sign:approve:rel.2"],
)
def test_documented_permissions_load(tmp_path: Path, permission: str) -> None:
    text = BASE.replace('permissions = ["jwt:sign:default"]', f'permissions = ["{permission}"]')
    assert load_settings(write(tmp_path, text)).principals[0].permissions == (permission,)


@pytest.mark.parametrize(
    "permission",
    [
        "jwt:sing:default",  # a typo would grant nothing, silently
        "foo:bar",
        "audit:read:x",
        "jwt:sign:de*ult",
        "jwt:sign:",
        "keys:*",  # wider than any documented grant
        "sign:*",
        "*",
    ],
)
def test_an_unknown_or_overbroad_permission_is_refused(tmp_path: Path, permission: str) -> None:
    text = BASE.replace('permissions = ["jwt:sign:default"]', f'permissions = ["{permission}"]')
    with pytest.raises(ConfigError, match=r"principals\[0\]\.permissions: unknown permission"):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize("name", ["system", "anonymous"])
def test_a_principal_may_not_take_an_actor_name_the_audit_log_uses(
    tmp_path: Path, name: str
) -> None:
    text = BASE.replace('name = "idp"', f'name = "{name}"')
    with pytest.raises(ConfigError, match=r"principals\[0\]\.name: .* is reserved"):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_pin_file_other_users_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, BASE)
    (tmp_path / "hsm-pin").chmod(mode)
    with pytest.raises(ConfigError, match=r"hsm\.pin_file: .* can be read or written by other"):
        load_settings(path)


def test_a_config_every_user_may_write_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by every user"):
        load_settings(path)
