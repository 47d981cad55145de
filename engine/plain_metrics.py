"""Metrics as plain numbers, turned into Prometheus families when ``/metrics`` is scraped.

A request adds to a dict of floats per counter, a list of bucket counts per
histogram label set (the bucket found with ``bisect``) or a plain int per gauge;
one ``prometheus_client`` collector per owner reads them at scrape time, so the
per-request cost is a few dict updates rather than prometheus-client's locked
value objects (benchmarks/RESULTS.md, "Cheap observers"). Under ``turnout serve
--workers N`` prometheus-client's multiprocess mode needs its own value classes
(they write the shared files ``/metrics`` merges): ``PrometheusFamily`` puts a
prometheus-client metric behind the same ``Family`` interface.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = [
    "CounterSums",
    "Family",
    "HistogramCounts",
    "Labels",
    "Level",
    "MetricSet",
    "PrometheusFamily",
    "SumsCollector",
]

Labels = tuple[str, ...]


class Family(Protocol):
    """One counter or histogram, by label values (a tuple in label order)."""

    def add(self, labels: Labels, amount: float) -> None:
        """Count ``amount`` (a counter) or observe it (a histogram)."""


class CounterSums:
    """A counter as a dict of sums by label values, read at scrape time."""

    def __init__(self, name: str, doc: str, labelnames: Sequence[str]) -> None:
        self.name, self.doc, self.labelnames = name, doc, list(labelnames)
        self.values: dict[Labels, float] = {}
        self.created: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float) -> None:
        values = self.values
        value = values.get(labels)
        if value is None:
            self.created[labels] = time.time()
            value = 0.0
        values[labels] = value + amount

    def family(self) -> Metric:
        out = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        created = self.created
        for labels, value in self.values.copy().items():
            out.add_metric(labels, value, created=created.get(labels))
        return out


class HistogramCounts:
    """A histogram as per-bucket counts (not cumulative) and a sum, by label
    values; ``bisect`` finds the bucket, the scrape makes the counts cumulative."""

    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.doc, self.labelnames = name, doc, list(labelnames)
        self.bounds = [float(b) for b in buckets]
        self._names = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.series: dict[Labels, list[float]] = {}
        """Per label values: one count per bucket (the last is +Inf), then the sum."""
        self.created: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0.0] * (len(self.bounds) + 2)
            self.created[labels] = time.time()
        counts[bisect_left(self.bounds, amount)] += 1
        counts[-1] += amount

    def family(self) -> Metric:
        out = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        created = self.created
        for labels, counts in self.series.copy().items():
            counts = counts[:]
            cumulative, buckets = 0.0, []
            for name, count in zip(self._names, counts, strict=False):
                cumulative += count
                buckets.append((name, cumulative))
            out.add_metric(labels, buckets, sum_value=counts[-1])
            # the _created sample prometheus-client's own Histogram exports
            at = created.get(labels)
            if at is not None:
                names = dict(zip(self.labelnames, labels, strict=True))
                out.samples.append(Sample(self.name + "_created", names, at))
        return out


class Level:
    """A gauge as a plain int (requests in flight), read at scrape time."""

    __slots__ = ("doc", "name", "value")

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc, self.value = name, doc, 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1

    def family(self) -> Metric:
        return GaugeMetricFamily(self.name, self.doc, value=self.value)


Plain = CounterSums | HistogramCounts | Level


class SumsCollector(Collector):
    """Plain counters, histograms and gauges of one owner, as metric families at
    scrape time; ``lock``: the one their updates are made under (None: they are
    updated and scraped on one thread, the gateway's event loop)."""

    def __init__(self, families: list[Plain], lock: threading.Lock | None = None):
        self._families = families
        self._lock = lock

    def collect(self) -> Iterator[Metric]:
        with self._lock or nullcontext():
            out = [family.family() for family in self._families]
        yield from out

    def describe(self) -> Iterator[Metric]:
        """The metric names, so the registry refuses a second set under them."""
        for family in self._families:
            if isinstance(family, CounterSums):
                yield CounterMetricFamily(family.name, family.doc, labels=family.labelnames)
            elif isinstance(family, Level):
                yield GaugeMetricFamily(family.name, family.doc)
            else:
                yield HistogramMetricFamily(family.name, family.doc, labels=family.labelnames)


class PrometheusFamily:
    """A prometheus-client metric behind the ``Family`` interface (multiprocess
    mode), its label children memoised: label lookups are the costly part."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self._children: dict[Labels, Any] = {}
        self._metric = metric
        self._record = "inc" if isinstance(metric, Counter) else "observe"

    def add(self, labels: Labels, amount: float) -> None:
        record = self._children.get(labels)
        if record is None:
            child = self._metric.labels(*labels) if labels else self._metric
            record = self._children[labels] = getattr(child, self._record)
        record(amount)


class MetricSet:
    """The metrics of one owner on one registry: plain numbers that one
    ``SumsCollector`` reads at scrape time, or, with ``multiprocess``
    (``PROMETHEUS_MULTIPROC_DIR`` set), prometheus-client's own objects. Make
    every metric, then call ``register()`` once.

    :param lock: the lock the owner makes its updates under (None: updated and
        scraped on one thread)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        multiprocess: bool,
        lock: threading.Lock | None = None,
    ) -> None:
        self._registry = registry
        self._multiprocess = multiprocess
        self._lock = lock
        self._plain: list[Plain] = []

    def counter(self, name: str, doc: str, labels: Sequence[str]) -> Family:
        """Counter ``name`` (exported as ``name_total``)."""
        if self._multiprocess:
            return PrometheusFamily(Counter(name, doc, labels, registry=self._registry))
        counter = CounterSums(name + "_total", doc, labels)
        self._plain.append(counter)
        return counter

    def histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Family:
        if self._multiprocess:
            metric = Histogram(name, doc, labels, buckets=buckets, registry=self._registry)
            return PrometheusFamily(metric)
        histogram = HistogramCounts(name, doc, labels, buckets)
        self._plain.append(histogram)
        return histogram

    def level(self, name: str, doc: str) -> Level | Gauge:
        """A gauge that goes up and down (``inc`` / ``dec``); summed over live
        workers in multiprocess mode."""
        if self._multiprocess:
            return Gauge(name, doc, multiprocess_mode="livesum", registry=self._registry)
        level = Level(name, doc)
        self._plain.append(level)
        return level

    def register(self) -> None:
        """Register the collector of the plain metrics made so far (if any)."""
        if self._plain:
            self._registry.register(SumsCollector(self._plain, self._lock))
