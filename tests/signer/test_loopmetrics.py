"""Loop-thread counters and histograms export exactly what prometheus-client's would."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from signer.loopmetrics import LoopCounter, LoopHistogram

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
