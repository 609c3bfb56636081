"""Declaring Prometheus metrics, the one way every module does.

``metrics = Metrics("segmenter")`` names every metric ``tenure_segmenter_<name>``;
labels are a handful of known values (channels, statuses, reasons), never a customer.
Every gauge reports shared state (read from the database) as set by whichever worker
evaluated last: ``multiprocess_mode="livemostrecent"``, so with several workers the
newest value of a live worker is exported, never a dead worker's stale one.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

NAMESPACE = "tenure"


class Metrics:
    """The metrics of one subsystem (a service, ``http``, ``kafka``)."""

    def __init__(self, subsystem: str) -> None:
        self.subsystem = subsystem

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labels, namespace=NAMESPACE, subsystem=self.subsystem)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        return Histogram(
            name,
            documentation,
            labels,
            namespace=NAMESPACE,
            subsystem=self.subsystem,
            buckets=buckets,
        )

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(
            name,
            documentation,
            labels,
            namespace=NAMESPACE,
            subsystem=self.subsystem,
            multiprocess_mode="livemostrecent",
        )
