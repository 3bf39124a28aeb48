"""Prometheus metrics: request latency, batch sizes, encoding-cache hits, and job counts and
durations read from SQL at scrape time (so they cover Celery workers on other machines)."""
from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: The ``X-Request-ID`` of the request being served (set by the app's middleware; the
#: threadpool that runs sync endpoints copies the context), for log lines deep in a request.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")


def current_request_id() -> str:
    return REQUEST_ID.get()


class JobCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from service.db import session_scope
        from service.tables import Job

        count = GaugeMetricFamily("nas_surrogate_jobs", "jobs by kind and status",
                                  labels=["kind", "status"])
        duration = GaugeMetricFamily("nas_surrogate_job_duration_seconds_max",
                                     "longest finished job by kind and status",
                                     labels=["kind", "status"])
        mean = GaugeMetricFamily("nas_surrogate_job_duration_seconds_mean",
                                 "mean duration of finished jobs by kind and status",
                                 labels=["kind", "status"])
        try:
            with session_scope() as session:
                rows = session.execute(select(Job.kind, Job.status, func.count())
                                       .group_by(Job.kind, Job.status)).all()
                timed = session.execute(select(Job.kind, Job.status, Job.started_at,
                                               Job.finished_at)
                                        .where(Job.finished_at.is_not(None),
                                               Job.started_at.is_not(None))
                                        .order_by(Job.finished_at.desc()).limit(1000)).all()
        except Exception:
            return
        for kind, status, n in rows:
            count.add_metric([kind, status], n)
        spans: dict[tuple[str, str], list[float]] = {}
        for kind, status, start, end in timed:
            spans.setdefault((kind, status), []).append((end - start).total_seconds())
        for key, values in spans.items():
            duration.add_metric(list(key), max(values))
            mean.add_metric(list(key), sum(values) / len(values))
        yield count
        yield duration
        yield mean


class Metrics:
    """One registry per app instance (tests build several apps in one process)."""

    def __init__(self, with_jobs: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("nas_surrogate_request_seconds", "request latency",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram("nas_surrogate_predict_batch_size", "genomes per /predict",
                                    registry=self.registry,
                                    buckets=(1, 10, 100, 500, 1000, 2000, 5000))
        self.cache = Counter("nas_surrogate_encoding_cache", "encoding cache lookups",
                             ["result"], registry=self.registry)
        if with_jobs:
            self.registry.register(JobCollector())
