"""The audit chain: records, canonical encoding, tamper detection and signed checkpoints."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from jwks.b64 import b64url_decode
from signer.audit.chain import (
    CHECKPOINT_ACTION,
    GENESIS,
    MAX_SAFE_INTEGER,
    OUTCOMES,
    AuditEntry,
    AuditRecord,
    canonical_json,
    checkpoint_entry,
    checkpoint_payload,
    format_time,
    link,
    link_all,
)
from signer.audit.chaincheck import BadRecord, ChainInput, parse_line, verify_chain
from signer.audit.checkpoint import verify_checkpoints

T0 = 1_790_000_000.25
MEMBERS = ("seq", "time", "actor", "action", "target", "outcome", "details", "prev", "hash")
Obj = dict[str, Any]

# ---------------------------------------------------------------------------------- helpers


def entry(i: int = 0, **changes: Any) -> AuditEntry:
    fields: Obj = {
        "time": format_time(T0 + i),
        "actor": "alice",
        "action": "jwt.sign",
        "target": "default",
        "outcome": "success",
        "details": {"kid": f"k{i}", "exp": 1_790_000_300 + i},
    }
    return AuditEntry(**(fields | changes))


def chain(n: int) -> list[AuditRecord]:
    return link_all([entry(i) for i in range(n)], head=None)


def objs(records: list[AuditRecord]) -> list[Obj]:
    return [json.loads(json.dumps(r.to_json())) for r in records]


def lines(records: list[AuditRecord]) -> list[str]:
    return [json.dumps(r.to_json(), ensure_ascii=False) for r in records]


def fields_of(item: AuditEntry | AuditRecord) -> Obj:
    """The caller-given members of an entry or record, to build a changed entry from."""
    return {name: getattr(item, name) for name in MEMBERS[1:7]}


def relink(records: list[AuditRecord]) -> list[AuditRecord]:
    """Recompute every seq, prev and hash, as a tamperer who can write the whole log would."""
    return link_all([AuditEntry(**fields_of(r)) for r in records], head=None)


def bad(items: Iterable[ChainInput], **start: Any) -> BadRecord:
    report = verify_chain(items, **start)
    assert not report.ok
    assert report.first_bad is not None
    return report.first_bad


def first_bad(items: Iterable[ChainInput], **start: Any) -> tuple[int, int, str]:
    found = bad(items, **start)
    return found.seq, found.line, found.kind


# ------------------------------------------------------------------------- time and entries


def test_format_time_is_rfc3339_utc_with_microseconds() -> None:
    assert format_time(1_790_000_000.5) == "2026-09-21T14:13:20.500000Z"
    assert format_time(0) == "1970-01-01T00:00:00.000000Z"


@given(
    seconds=st.floats(min_value=-62_135_596_800, max_value=253_402_300_799.4)
    | st.integers(min_value=1_700_000_000, max_value=1_900_000_000).map(lambda s: s + 0.9999995)
)
def test_format_time_rounds_as_datetime_does(seconds: float) -> None:
    """The text of each second is cached; the result is still datetime's, rounding included."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    expected = moment.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
    assert format_time(seconds) == expected


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf, 1e300])
def test_format_time_refuses_non_times(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"time|seconds"):
        format_time(seconds)


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-29T01:02:03Z",
        "2026-11-29T01:02:03.123Z",
        "2026-11-29T01:02:03.123456+00:00",
        "2026-11-29 01:02:03.123456Z",
        "2026-13-29T01:02:03.123456Z",
        "2026-02-30T01:02:03.123456Z",
        "\uff12\uff10\uff12\uff16-11-29T01:02:03.123456Z",  # fullwidth digits
    ],
)
def test_entry_refuses_other_time_forms(time: str) -> None:
    with pytest.raises(ValueError, match="time"):
        entry(time=time)


def test_entry_refuses_an_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="outcome"):
        entry(outcome="ok")


def test_entry_refuses_an_empty_actor() -> None:
    with pytest.raises(ValueError, match="actor must not be empty"):
        entry(actor="")


@pytest.mark.parametrize(
    ("details", "problem"),
    [
        ({"ratio": 0.5}, "float"),
        ({"ratio": math.nan}, "float"),
        ({"big": MAX_SAFE_INTEGER + 1}, "outside"),
        ({"text": "\ud800"}, "lone surrogate"),
        ({"emoji-🔑": 1}, "BMP"),
        ({1: "one"}, "not a string"),
        ({"set": {1, 2}}, "a set"),
        ({"deep": json.loads("[" * 40 + "]" * 40)}, "deeper"),
    ],
)
def test_entry_refuses_details_that_have_no_canonical_form(details: Obj, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        entry(details=details)


def test_entry_details_are_a_private_copy() -> None:
    details: Obj = {"subjects": ["a"]}
    record = link(entry(details=details), seq=1, prev=GENESIS)
    details["subjects"].append("b")

    assert record.details == {"subjects": ["a"]}
    assert AuditRecord.from_json(record.to_json()) == record


# ------------------------------------------------------------------ records and canonical form


def test_first_record_follows_genesis() -> None:
    (record,) = link_all([entry()], head=None)

    assert (record.seq, record.prev) == (1, GENESIS)


def test_link_all_continues_after_the_head() -> None:
    first = chain(3)
    more = link_all([entry(3), entry(4)], head=first[-1])

    assert [r.seq for r in more] == [4, 5]
    assert more[0].prev == first[-1].hash
    assert verify_chain(first + more).ok


@pytest.mark.parametrize(("seq", "prev"), [(1, "a" * 64), (2, GENESIS), (0, GENESIS)])
def test_only_seq_1_follows_genesis(seq: int, prev: str) -> None:
    with pytest.raises(ValueError, match="seq"):
        link(entry(), seq=seq, prev=prev)


def test_hash_matches_the_documented_example() -> None:
    """The worked example of the module docstring, for re-implementers."""
    record = link(
        entry(
            time="2026-11-29T01:02:03.123456Z",
            action="key.revoke",
            target="default/k1",
            details={"reason": "clé perdue", "n": 2},
        ),
        seq=1,
        prev=GENESIS,
    )

    assert record.hash == "5dae09d2cc1a765ddf05fe318e75266a2a5a6179424adc4c6afffa5c7347f67d"


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    value = {"b": "é\u2028😀\x7f", "a": {"z": None, "y": [True, -1]}, "c": '\n\x01"\\'}

    assert canonical_json(value) == (
        '{"a":{"y":[true,-1],"z":null},"b":"é\u2028😀\x7f","c":"\\n\\u0001\\"\\\\"}'.encode()
    )


_KEYS = st.text(st.characters(max_codepoint=0xFFFF, codec="utf-8"), max_size=6)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=8,
)
_DETAILS = st.dictionaries(_KEYS, _JSON, max_size=4)
_ENTRIES = st.builds(
    AuditEntry,
    time=st.floats(min_value=0, max_value=4e9).map(format_time),
    actor=st.text(min_size=1, max_size=8),
    action=st.sampled_from(["jwt.sign", "key.revoke", "authz.deny", CHECKPOINT_ACTION]),
    target=st.text(max_size=8),
    outcome=st.sampled_from(sorted(OUTCOMES)),
    details=_DETAILS,
)


@given(_DETAILS)
def test_canonical_json_does_not_depend_on_key_order(details: Obj) -> None:
    reordered = dict(reversed(list(details.items())))

    assert canonical_json(reordered) == canonical_json(details)
    assert json.loads(canonical_json(details)) == details


@given(_ENTRIES)
def test_record_round_trips_through_exported_json(item: AuditEntry) -> None:
    record = link(item, seq=7, prev="ab" * 32)
    exported = json.loads(json.dumps(record.to_json()))

    assert list(record.to_json()) == list(MEMBERS)
    assert AuditRecord.from_json(exported) == record


@given(_ENTRIES)
def test_a_linked_record_is_the_record_its_members_make(item: AuditEntry) -> None:
    """``link`` skips re-checking the entry; the result must equal the fully checked record."""
    linked = link(item, seq=7, prev="ab" * 32)
    built = AuditRecord(seq=7, prev="ab" * 32, **fields_of(item))

    assert linked == built
    assert linked.hash == built.hash
    assert linked.content == canonical_json({n: getattr(built, n) for n in MEMBERS[:-1]})


@given(_ENTRIES)
def test_a_stored_line_holds_the_nine_members_and_parses_back(item: AuditEntry) -> None:
    record = link(item, seq=7, prev="ab" * 32)

    stored = parse_line(record.line())

    assert isinstance(stored, dict)
    assert sorted(stored) == sorted(MEMBERS)
    assert AuditRecord.from_json(stored) == record


def test_to_json_returns_a_copy() -> None:
    record = chain(1)[0]
    record.to_json()["details"]["kid"] = "other"

    assert record.details["kid"] == "k0"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda o: o.pop("hash"), "no member hash"),
        (lambda o: o.update(extra=1), "unknown member 'extra'"),
        (lambda o: o.update(seq="1"), "seq must be an integer, not a string"),
        (lambda o: o.update(seq=True), "seq must be an integer, not a boolean"),
        (lambda o: o.update(details=[]), "details must be an object, not an array"),
        (lambda o: o.update(time=1_790_000_000), "time must be a string, not an integer"),
        (lambda o: o.update(actor=None), "actor must be a string, not null"),
        (lambda o: o.update(hash=o["hash"].upper()), "hash must be 64 lowercase hex"),
        (lambda o: o.update(target="other"), "is not the content's"),
    ],
)
def test_from_json_names_the_problem(change: Callable[[Obj], object], problem: str) -> None:
    obj = objs(chain(1))[0]
    change(obj)

    with pytest.raises(ValueError, match=problem):
        AuditRecord.from_json(obj)


def test_from_json_refuses_a_non_object() -> None:
    with pytest.raises(ValueError, match="a record is a JSON object, not an array"):
        AuditRecord.from_json([])


def test_parse_line_refuses_duplicate_members() -> None:
    """RFC 8259 §4: a SIEM could read the other duplicate than the one that was hashed."""
    with pytest.raises(ValueError, match="'actor' appears twice"):
        parse_line('{"actor": "mallory", "actor": "alice"}')


# -------------------------------------------------------------------------- verifying chains


@given(st.lists(_ENTRIES, max_size=6))
def test_any_chain_verifies(entries: list[AuditEntry]) -> None:
    records = link_all(entries, head=None)
    report = verify_chain(lines(records))

    assert report.ok
    assert report.first_bad is None
    assert report.count == len(records)
    assert report.head == (records[-1] if records else None)


@pytest.mark.parametrize(
    "form",
    [
        lambda r: r,
        lambda r: r.to_json(),
        lambda r: json.dumps(r.to_json()),
        lambda r: json.dumps(r.to_json(), ensure_ascii=False).encode(),
    ],
    ids=["records", "objects", "lines", "bytes"],
)
def test_verify_reads_records_objects_and_lines(form: Callable[[AuditRecord], ChainInput]) -> None:
    assert verify_chain([form(r) for r in chain(3)]).ok


def test_empty_log_verifies() -> None:
    assert verify_chain([]) == verify_chain([], start_seq=5, start_prev="ab" * 32)
    assert verify_chain([]).ok


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("seq", 4),
        ("time", "2026-11-29T01:02:03.123456Z"),
        ("actor", "mallory"),
        ("action", "key.destroy"),
        ("target", "other"),
        ("outcome", "denied"),
        ("details", {"kid": "k9"}),
        ("prev", "ab" * 32),
        ("hash", "ab" * 32),
    ],
)
def test_changing_any_member_is_caught_at_that_record(member: str, value: object) -> None:
    items = objs(chain(5))
    items[2][member] = value

    assert first_bad(items) == (4 if member == "seq" else 3, 3, "changed")


def test_removing_a_middle_record_is_reported_as_removed() -> None:
    items = lines(chain(6))
    del items[2]

    assert first_bad(items) == (4, 3, "removed")
    assert "seq 3 was removed" in bad(items).reason


def test_removing_several_records_names_the_range() -> None:
    items = lines(chain(8))
    del items[2:5]

    assert first_bad(items) == (6, 3, "removed")
    assert "seqs 3-5 were removed" in bad(items).reason


def test_removing_the_last_records_is_not_detectable_by_the_chain() -> None:
    """Documented limit: only a checkpoint held elsewhere reveals a cut tail."""
    report = verify_chain(lines(chain(6))[:4])

    assert report.ok
    assert report.count == 4


def test_swapping_adjacent_records_is_reported_as_reordered() -> None:
    items = lines(chain(6))
    items[2], items[3] = items[3], items[2]

    assert first_bad(items) == (4, 3, "reordered")


def test_moving_a_record_earlier_is_reported_as_reordered() -> None:
    items = lines(chain(6))
    items.insert(1, items.pop(4))

    assert first_bad(items) == (5, 2, "reordered")


def test_inserting_a_forged_record_with_a_valid_hash_is_reported_as_inserted() -> None:
    """The forgery links to seq 2 and checks by itself; genuine seq 3 after it disowns it."""
    records = chain(6)
    forged = link(entry(actor="mallory"), seq=3, prev=records[1].hash)
    items = [*records[:2], forged, *records[2:]]

    assert first_bad(items) == (3, 3, "inserted")
    assert verify_chain(items).count == 2


def test_inserting_an_unlinked_forged_record_is_blamed_on_itself() -> None:
    records = chain(6)
    forged = link(entry(actor="mallory"), seq=3, prev="ab" * 32)
    items = [*records[:2], forged, *records[2:]]

    assert first_bad(items) == (3, 3, "inserted")


def test_replacing_a_record_with_a_recomputed_hash_is_caught_by_the_next_prev() -> None:
    records = chain(6)
    records[2] = link(entry(2, actor="mallory"), seq=3, prev=records[1].hash)

    assert first_bad(lines(records)) == (3, 3, "inserted")
    assert "line 3 is forged" in bad(lines(records)).reason


def test_replacing_the_last_record_with_a_recomputed_hash_is_not_detectable() -> None:
    """Nothing follows it: the tail after the last checkpoint is only chained."""
    records = chain(4)
    records[3] = link(entry(3, actor="mallory"), seq=4, prev=records[2].hash)

    assert verify_chain(records).ok


def test_a_duplicated_record_is_reported_as_inserted() -> None:
    items = lines(chain(5))
    items.insert(3, items[2])

    assert first_bad(items) == (3, 4, "inserted")
    assert verify_chain(items).count == 3
    assert "second copy" in bad(items).reason


def test_an_old_record_copied_to_the_end_is_reported_as_inserted() -> None:
    items = lines(chain(5))
    items.append(items[1])

    assert first_bad(items) == (2, 6, "inserted")


def test_a_later_record_copied_early_is_reported_as_inserted() -> None:
    items = lines(chain(6))
    items.insert(2, items[4])

    assert first_bad(items) == (5, 3, "inserted")


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("{", "not JSON"),
        ("", "empty"),
        ("[]", "not an array"),
        ('{"seq": 3}', "no member"),
        (b"\xff\xfe", "not UTF-8"),
        ('{"seq": NaN}', "no member"),
    ],
)
def test_an_unreadable_line_is_malformed_at_its_position(
    bad_line: str | bytes, problem: str
) -> None:
    items: list[ChainInput] = [*lines(chain(5))]
    items[2] = bad_line

    assert first_bad(items) == (3, 3, "malformed")
    assert problem in bad(items).reason


@pytest.mark.parametrize(
    ("member", "value"),
    [("outcome", "ok"), ("seq", "3"), ("details", None), ("time", "yesterday"), ("hash", "xyz")],
)
def test_a_record_of_wrong_types_is_malformed(member: str, value: object) -> None:
    items = objs(chain(5))
    items[3][member] = value

    assert first_bad(items) == (4, 4, "malformed")


def test_cutting_the_start_is_reported_as_removed() -> None:
    assert first_bad(lines(chain(6))[2:]) == (3, 1, "removed")


def test_an_export_after_a_record_verifies_from_its_hash() -> None:
    records = chain(6)

    report = verify_chain(lines(records[3:]), start_seq=4, start_prev=records[2].hash)
    assert report.ok
    assert report.count == 3


def test_an_export_that_does_not_continue_from_the_given_hash_is_reported() -> None:
    records = chain(6)

    assert first_bad(lines(records[3:]), start_seq=4, start_prev=records[1].hash) == (
        4,
        1,
        "inserted",
    )


@pytest.mark.parametrize(("seq", "prev"), [(3, GENESIS), (1, "ab" * 32), (0, GENESIS)])
def test_an_inconsistent_start_is_a_caller_error(seq: int, prev: str) -> None:
    with pytest.raises(ValueError, match="start"):
        verify_chain([], start_seq=seq, start_prev=prev)


@given(st.data())
def test_any_single_member_change_is_caught_at_or_before_that_record(data: st.DataObject) -> None:
    records = link_all(data.draw(st.lists(_ENTRIES, min_size=1, max_size=6)), head=None)
    index = data.draw(st.integers(min_value=0, max_value=len(records) - 1))
    member = data.draw(st.sampled_from(MEMBERS))
    items = objs(records)
    old = items[index][member]
    new = data.draw(_JSON.filter(lambda v: not (type(v) is type(old) and v == old)))
    items[index][member] = new

    report = verify_chain(items)
    assert not report.ok
    assert report.first_bad is not None
    assert report.first_bad.line <= index + 1
    assert report.count <= index


# ------------------------------------------------------------------------------ checkpoints

KID = "audit-1"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def es256(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    """Sign as the HSM does: ES256 in the JOSE form, raw r || s (RFC 7518 §3.4)."""
    r, s = decode_dss_signature(key.sign(payload, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def checkpoint(
    key: ec.EllipticCurvePrivateKey,
    head: AuditRecord,
    *,
    signed: AuditRecord | None = None,
    kid: str = KID,
    tamper: Callable[[bytes], bytes] = lambda s: s,
) -> AuditEntry:
    """A checkpoint entry over ``head`` whose signature covers ``signed`` (default: head)."""
    time = format_time(T0 + 3600)
    signature = es256(key, checkpoint_payload(signed or head, kid=kid, time=time))
    return checkpoint_entry(head, kid=kid, time=time, signature=tamper(signature))


def checkpointed(key: ec.EllipticCurvePrivateKey, **options: Any) -> list[AuditRecord]:
    """Records 1-5, a checkpoint over seq 5 as seq 6, then records 7-8."""
    records = chain(5)
    records += link_all([checkpoint(key, records[-1], **options)], head=records[-1])
    return records + link_all([entry(7), entry(8)], head=records[-1])


def test_checkpoint_payload_is_the_canonical_head_statement() -> None:
    head = chain(3)[-1]
    payload = checkpoint_payload(head, kid=KID, time="2026-11-29T01:02:03.123456Z")

    assert json.loads(payload) == {
        "type": "signer-audit-checkpoint/v1",
        "seq": 3,
        "hash": head.hash,
        "kid": KID,
        "time": "2026-11-29T01:02:03.123456Z",
    }
    assert payload == canonical_json(json.loads(payload))


def test_checkpoint_entry_is_a_system_record_with_a_base64url_signature(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    head = chain(3)[-1]
    item = checkpoint(key, head)

    assert (item.actor, item.action, item.target, item.outcome) == (
        "system",
        CHECKPOINT_ACTION,
        "audit",
        "success",
    )
    assert set(item.details) == {"seq", "hash", "kid", "alg", "signature"}
    assert (item.details["seq"], item.details["hash"], item.details["alg"]) == (
        3,
        head.hash,
        "ES256",
    )
    signature = item.details["signature"]
    assert isinstance(signature, str)
    assert len(b64url_decode(signature)) == 64


def test_checkpoint_entry_refuses_a_der_signature(key: ec.EllipticCurvePrivateKey) -> None:
    head = chain(1)[-1]
    der = key.sign(checkpoint_payload(head, kid=KID, time=head.time), ec.ECDSA(hashes.SHA256()))

    with pytest.raises(ValueError, match="64 octets"):
        checkpoint_entry(head, kid=KID, time=head.time, signature=der)


def test_a_valid_checkpoint_covers_everything_up_to_its_head(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    report = verify_checkpoints(lines(checkpointed(key)), key.public_key())

    assert report.ok
    assert (report.count, report.checked, report.last_signed_seq) == (8, 1, 5)


def test_keys_are_chosen_by_kid(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()

    report = verify_checkpoints(checkpointed(key), {"old": other, KID: key.public_key()})
    assert (report.ok, report.checked) == (True, 1)


def test_a_log_without_checkpoints_is_ok_but_signs_nothing(key: ec.EllipticCurvePrivateKey) -> None:
    report = verify_checkpoints(chain(4), key.public_key())

    assert (report.ok, report.checked, report.last_signed_seq) == (True, 0, None)


def test_a_bad_signature_is_reported(key: ec.EllipticCurvePrivateKey) -> None:
    records = checkpointed(key, tamper=lambda s: s[:40] + bytes([s[40] ^ 1]) + s[41:])

    report = verify_checkpoints(records, key.public_key())
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.line, report.first_bad.kind) == (
        6,
        6,
        "bad-signature",
    )
    assert (report.count, report.checked) == (5, 0)


def test_a_signature_by_another_key_is_reported(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())

    report = verify_checkpoints(checkpointed(other), key.public_key())
    assert report.first_bad is not None
    assert report.first_bad.kind == "bad-signature"


def test_an_unknown_kid_is_reported(key: ec.EllipticCurvePrivateKey) -> None:
    report = verify_checkpoints(checkpointed(key, kid="stranger"), {KID: key.public_key()})

    assert report.first_bad is not None
    assert report.first_bad.kind == "bad-signature"
    assert "not a trusted key" in report.first_bad.reason


def test_a_checkpoint_naming_another_hash_than_the_record_is_a_mismatch(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """Validly signed, but over a head that is not record 5 of this log."""
    other_head = link_all([entry(i, actor="bob") for i in range(5)], head=None)[-1]
    records = chain(5)
    item = checkpoint(key, other_head)
    records += link_all([item], head=records[-1])

    report = verify_checkpoints(records, key.public_key())
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.kind) == (6, "mismatch")
    assert verify_chain(records).ok


def test_a_checkpoint_over_a_rewritten_prefix_is_a_mismatch(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """A whole rewrite with recomputed hashes fools the chain, not the signed checkpoint."""
    records = checkpointed(key)
    forged = link(entry(1, actor="mallory"), seq=2, prev=records[0].hash)
    rewritten = relink([records[0], forged, *records[2:]])

    assert verify_chain(rewritten).ok
    report = verify_checkpoints(rewritten, key.public_key())
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.kind) == (6, "mismatch")
    assert report.last_signed_seq is None


def test_a_rewritten_prefix_with_its_checkpoint_updated_fails_the_signature(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    records = checkpointed(key)
    forged = link(entry(1, actor="mallory"), seq=2, prev=records[0].hash)
    rewritten = relink([records[0], forged, *records[2:5]])
    details = dict(records[5].details) | {"hash": rewritten[-1].hash}
    rewritten += link_all(
        [AuditEntry(**fields_of(records[5]) | {"details": details})], head=rewritten[-1]
    )

    report = verify_checkpoints(rewritten, key.public_key())
    assert report.first_bad is not None
    assert report.first_bad.kind == "bad-signature"


def test_a_chain_fault_before_a_checkpoint_is_reported(key: ec.EllipticCurvePrivateKey) -> None:
    items = objs(checkpointed(key))
    items[1]["actor"] = "mallory"

    report = verify_checkpoints(items, key.public_key())
    assert report.first_bad is not None
    assert (report.first_bad.seq, report.first_bad.kind, report.checked) == (2, "changed", 0)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"alg": "RS256"}, "alg must be ES256"),
        ({"seq": 6}, "seq from 1 to 5"),
        ({"hash": "xyz"}, "64 lowercase hex"),
        ({"kid": ""}, "kid"),
        ({"signature": "AAAA"}, "64 octets"),
        ({"extra": 1}, "exactly"),
    ],
)
def test_a_malformed_checkpoint_is_reported(
    key: ec.EllipticCurvePrivateKey, change: Obj, problem: str
) -> None:
    records = chain(5)
    item = checkpoint(key, records[-1])
    item = AuditEntry(**fields_of(item) | {"details": dict(item.details) | change})
    records += link_all([item], head=records[-1])

    report = verify_checkpoints(records, key.public_key())
    assert report.first_bad is not None
    assert (report.first_bad.line, report.first_bad.kind) == (6, "malformed")
    assert problem in report.first_bad.reason


def test_an_export_starting_after_the_checkpointed_head_checks_it_against_start_prev(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    records = checkpointed(key)

    report = verify_checkpoints(
        records[5:], key.public_key(), start_seq=6, start_prev=records[4].hash
    )
    assert (report.ok, report.checked, report.last_signed_seq) == (True, 1, 5)


def test_a_checkpoint_over_records_before_the_export_does_not_count(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """It names seq 4, and the export starts after seq 5: it can vouch for none of the input."""
    records = chain(5)
    records += link_all([checkpoint(key, records[3])], head=records[-1])

    export = verify_checkpoints(
        records[5:], key.public_key(), start_seq=6, start_prev=records[4].hash
    )
    assert (export.ok, export.checked, export.last_signed_seq) == (True, 0, None)
    assert verify_checkpoints(records, key.public_key()).last_signed_seq == 4


def test_only_p256_keys_are_trusted() -> None:
    with pytest.raises(ValueError, match="P-256"):
        verify_checkpoints([], ec.generate_private_key(ec.SECP384R1()).public_key())


def test_records_after_the_last_checkpoint_are_only_chained(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """Documented limit: a tail rewritten after the last checkpoint still verifies, unsigned."""
    records = checkpointed(key)
    records[7] = link(entry(8, actor="mallory"), seq=8, prev=records[6].hash)

    report = verify_checkpoints(records, key.public_key())
    assert (report.ok, report.count, report.last_signed_seq) == (True, 8, 5)
