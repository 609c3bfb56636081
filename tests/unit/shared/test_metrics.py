"""Every metric is declared through shared.metrics: named tenure_<subsystem>_, gauges
multiprocess-safe."""

from __future__ import annotations

import importlib

from prometheus_client import REGISTRY, Gauge

from shared.metrics import Metrics

MODULES = [
    "services.dispatcher.metrics",
    "services.ingest.metrics",
    "services.journey.metrics",
    "services.metrics.metrics",
    "services.segmenter.metrics",
    "shared.http.metrics",
    "shared.kafka.metrics",
]


def test_a_declared_gauge_keeps_the_newest_value_of_a_live_worker() -> None:
    gauge = Metrics("unit_test").gauge("declared_gauge", "A gauge of the test.", ["kind"])
    try:
        assert gauge._multiprocess_mode == "livemostrecent"
        assert gauge._name == "tenure_unit_test_declared_gauge"
    finally:
        REGISTRY.unregister(gauge)


def test_every_gauge_of_every_service_is_multiprocess_safe() -> None:
    gauges = []
    for name in MODULES:
        module = importlib.import_module(name)
        gauges += [v for v in vars(module).values() if isinstance(v, Gauge)]
    assert gauges
    assert {g._name: g._multiprocess_mode for g in gauges} == {
        g._name: "livemostrecent" for g in gauges
    }
