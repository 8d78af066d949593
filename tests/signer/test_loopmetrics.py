"""Loop-thread counters and histograms export exactly what prometheus-client's would, summed
over the workers that share them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from signer.loopmetrics import LoopCounter, LoopHistogram
from signer.metrics import Metrics

BUCKETS = (0.001, 0.01, 0.1, 1.0)
# Exactly on a bound, between bounds, below the first, past the last.
VALUES = (0.001, 0.0005, 0.05, 0.1, 2.0, 0.0, 1.0)


def without_created(exposition: bytes) -> list[str]:
    return [line for line in exposition.decode().splitlines() if "_created" not in line]


def test_a_histogram_exports_prometheus_clients_samples() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    labels = ["route", "status"]
    reference = Histogram("t_seconds", "Doc.", labels, buckets=BUCKETS, registry=theirs)
    loop = LoopHistogram("t_seconds", "Doc.", labels, buckets=BUCKETS, registry=ours)
    for index, value in enumerate(VALUES):
        values = ("/a", 200 if index % 2 else 404)
        reference.labels(*values).observe(value)
        loop.labels(*values).observe(value)

    assert without_created(generate_latest(ours)) == without_created(generate_latest(theirs))


def test_a_histogram_without_labels_exports_prometheus_clients_samples() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("t_records", "Doc.", buckets=(1, 5, math.inf), registry=theirs)
    loop = LoopHistogram("t_records", "Doc.", buckets=(1, 5, math.inf), registry=ours)
    for value in (1, 3, 7, 7):
        reference.observe(value)
        loop.observe(value)

    assert without_created(generate_latest(ours)) == without_created(generate_latest(theirs))


def test_a_counter_exports_prometheus_clients_samples() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Counter("t_requests_total", "Doc.", ["ring", "status"], registry=theirs)
    loop = LoopCounter("t_requests_total", "Doc.", ["ring", "status"], registry=ours)
    for labels in (("a", 200), ("a", 304), ("a", 200), ("b", 200)):
        reference.labels(*labels).inc()
        loop.labels(*labels).inc()
    reference.labels("b", 200).inc(2.5)
    loop.labels("b", 200).inc(2.5)

    assert without_created(generate_latest(ours)) == without_created(generate_latest(theirs))


def test_every_series_has_a_created_timestamp() -> None:
    ours = CollectorRegistry()
    LoopCounter("t_total", "Doc.", ["x"], registry=ours).labels("1").inc()
    LoopHistogram("t_seconds", "Doc.", buckets=BUCKETS, registry=ours).observe(0.5)

    lines = generate_latest(ours).decode().splitlines()
    created = [line for line in lines if "_created" in line and not line.startswith("#")]

    assert [line.split(" ")[0] for line in created] == ['t_created{x="1"}', "t_seconds_created"]


def test_wrong_label_counts_and_negative_increments_are_refused() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("t_total", "Doc.", ["x"], registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("1", "2")
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("1").inc(-1)


def test_a_name_already_registered_is_refused() -> None:
    registry = CollectorRegistry()
    LoopCounter("t_total", "Doc.", registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        LoopHistogram("t", "Doc.", buckets=BUCKETS, registry=registry)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


def test_each_worker_answers_with_the_sum_of_every_workers_series(tmp_path: Path) -> None:
    first, second = Metrics(), Metrics()
    first.share(tmp_path, 0)
    second.share(tmp_path, 1)
    first.jwks_served("default", 200)
    second.jwks_served("default", 200)
    second.jwks_served("default", 304)
    first.sign.labels("default", "ES256").observe(0.002)
    second.sign.labels("default", "ES256").observe(0.02)
    first.audit_queue.function = lambda: 3
    second.audit_queue.function = lambda: 4
    first.publish()
    second.publish()

    for metrics in (first, second):
        seen = samples(metrics)
        jwks = "signer_jwks_requests_total"
        assert seen[(jwks, (("ring", "default"), ("status", "200")))] == 2
        assert seen[(jwks, (("ring", "default"), ("status", "304")))] == 1
        sign = (("alg", "ES256"), ("ring", "default"))
        assert seen[("signer_jwt_sign_duration_seconds_count", sign)] == 2
        assert seen[("signer_jwt_sign_duration_seconds_sum", sign)] == pytest.approx(0.022)
        bucket = ("signer_jwt_sign_duration_seconds_bucket", (*sign[:1], ("le", "0.005"), sign[1]))
        assert seen[bucket] == 1
        assert seen[("signer_audit_queue_depth", ())] == 7


def test_a_worker_that_has_not_published_yet_is_not_counted(tmp_path: Path) -> None:
    alone = Metrics()
    alone.share(tmp_path, 0)
    alone.jwks_served("default", 200)

    series = ("signer_jwks_requests_total", (("ring", "default"), ("status", "200")))
    assert samples(alone)[series] == 1


def test_unreadable_or_misshapen_peer_files_are_left_out(tmp_path: Path) -> None:
    mine = Metrics()
    mine.share(tmp_path, 0)
    mine.jwks_served("default", 200)
    (tmp_path / "worker-1.json").write_text("{not json")
    (tmp_path / "worker-2.json").write_text(json.dumps([1, 2]))
    (tmp_path / "worker-3.json").write_text(
        json.dumps(
            {
                "signer_jwks_requests": [
                    [["default"], 5, 0.0],  # one label short
                    [["default", "200"], "five", 0.0],  # not a number
                    [["default", "200"], 5, 0.0],  # fine
                ],
                "signer_jwt_sign_duration_seconds": [[["r", "ES256"], [1, 2], 0.1, 0.0]],
            }
        )
    )

    seen = samples(mine)

    assert seen[("signer_jwks_requests_total", (("ring", "default"), ("status", "200")))] == 6
    assert not any(name.startswith("signer_jwt_sign_duration") for name, _ in seen)
