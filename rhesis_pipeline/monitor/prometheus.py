"""Prometheus metrics, computed from the database at each scrape.

One scrape of ``/metrics`` (on ``rhesis-monitor serve-health`` and on the dashboard)
sees the whole system, whichever process answers it: the numbers come from the tables,
not from one worker's memory. Gauges are read as ``status`` reads them (one snapshot);
counters and histograms add the running totals of ``rhesis.metric_totals`` (what
retention deleted; histograms observed when each run finished), so they never go down.

docs/operating/metrics.md lists every metric (name, type, labels) with example alert rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rhesis_pipeline.monitor.status import RUN_STATUSES, take_snapshot
from rhesis_pipeline.runs import histograms
from rhesis_pipeline.runs.states import TERMINAL_TEST_STATUSES, WorkerState
from rhesis_pipeline.storage import tenancy
from rhesis_pipeline.storage.queries import Q


class DatabaseCollector:
    """A prometheus_client collector reading everything at collect time."""

    def __init__(self, organization_id: str | None = None, *, max_hours: float = 2.0) -> None:
        self.organization_id = organization_id
        self.max_hours = max_hours

    def collect(self) -> Iterator[Metric]:
        snapshot = take_snapshot(
            max_hours=self.max_hours, active_limit=1, organization_id=self.organization_id
        )
        with tenancy.connect(self.organization_id) as conn:
            finished = conn.execute(Q["tests_finished_by_status"]).one()._mapping
            # The totals are the system's: a tenant's scrape has only its visible rows.
            totals = (
                {}
                if self.organization_id is not None
                else {
                    (row.metric, row.labels): row.value for row in conn.execute(Q["metric_totals"])
                }
            )

        runs = GaugeMetricFamily("rhesis_runs", "Runs stored, by status.", labels=["status"])
        for status in RUN_STATUSES:
            runs.add_metric([status.value], snapshot.runs_by_status.get(status.value, 0))
        yield runs

        tests = CounterMetricFamily(
            "rhesis_tests_finished",
            "Tests with a terminal outcome, by status (runs deleted by retention included).",
            labels=["status"],
        )
        for test_status in TERMINAL_TEST_STATUSES:
            deleted = totals.get(("deleted_tests", test_status.value), 0)
            tests.add_metric([test_status.value], float(finished[test_status.value]) + deleted)
        yield tests

        deleted_runs = CounterMetricFamily(
            "rhesis_runs_deleted",
            "Finished runs deleted by retention, by status.",
            labels=["status"],
        )
        for status in RUN_STATUSES:
            deleted_runs.add_metric([status.value], totals.get(("deleted_runs", status.value), 0))
        yield deleted_runs

        depth = GaugeMetricFamily(
            "rhesis_queue_messages", "Messages in each queue, by state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "rhesis_queue_oldest_waiting_seconds",
            "Age of the oldest waiting message of each queue (0: none waits).",
            labels=["queue"],
        )
        consumers = GaugeMetricFamily(
            "rhesis_queue_consumers", "Live workers consuming each queue.", labels=["queue"]
        )
        for queue in snapshot.queues:
            for state in ("queued", "consumed", "rejected", "done"):
                depth.add_metric([queue.queue, state], getattr(queue, state))
            oldest.add_metric([queue.queue], queue.oldest_queued_age_s or 0.0)
            consumers.add_metric([queue.queue], queue.consumers)
        yield from (depth, oldest, consumers)

        workers = GaugeMetricFamily(
            "rhesis_workers",
            "Registered worker processes: live, stopped (cleanly) or dead.",
            labels=["state"],
        )
        workers.add_metric([WorkerState.LIVE.value], len(snapshot.workers.live))
        workers.add_metric([WorkerState.STOPPED.value], len(snapshot.workers.stopped))
        workers.add_metric([WorkerState.DEAD.value], len(snapshot.workers.dead))
        yield workers

        yield GaugeMetricFamily(
            "rhesis_stuck_runs",
            f"Runs queued or in progress for {self.max_hours:g}h or more, or without "
            "progress that long.",
            value=snapshot.runs.stuck,
        )
        yield GaugeMetricFamily(
            "rhesis_stalled_callbacks",
            "Runs with every outcome stored whose completion callback will not run.",
            value=len(snapshot.stalled_callbacks),
        )
        waiting = GaugeMetricFamily(
            "rhesis_waiting_tests",
            "Tests waiting to run, by organization ('' for none); the busiest ones.",
            labels=["organization"],
        )
        running = GaugeMetricFamily(
            "rhesis_running_tests",
            "Tests claimed by workers, by organization ('' for none); the busiest ones.",
            labels=["organization"],
        )
        for load in snapshot.tenants:
            waiting.add_metric([load.organization_id], load.waiting)
            running.add_metric([load.organization_id], load.running)
        yield from (waiting, running)

        families = {
            "in_flight": GaugeMetricFamily(
                "rhesis_endpoint_in_flight",
                "Tests in flight to an endpoint limit key, across all workers.",
                labels=["key"],
            ),
            "waiting": GaugeMetricFamily(
                "rhesis_endpoint_waiting",
                "Tests waiting for a slot or a token of an endpoint limit key.",
                labels=["key"],
            ),
            "current_limit": GaugeMetricFamily(
                "rhesis_endpoint_limit",
                "The concurrency an endpoint limit key allows now (adaptive: halved on a "
                "429, grown on successes, at most its max_concurrency).",
                labels=["key"],
            ),
            "max_concurrency": GaugeMetricFamily(
                "rhesis_endpoint_max_concurrency",
                "The declared (or default) max_concurrency of an endpoint limit key.",
                labels=["key"],
            ),
            "paused_for_s": GaugeMetricFamily(
                "rhesis_endpoint_paused_seconds",
                "Seconds left of the pause a 429's Retry-After put on the key.",
                labels=["key"],
            ),
            "throttled_last_minute": GaugeMetricFamily(
                "rhesis_endpoint_throttled_last_minute",
                "429 answers of an endpoint limit key in about the last minute.",
                labels=["key"],
            ),
        }
        throttled = CounterMetricFamily(
            "rhesis_endpoint_throttled",
            "429 answers of an endpoint limit key since it was first used.",
            labels=["key"],
        )
        for endpoint in snapshot.endpoints:
            for attribute, family in families.items():
                family.add_metric([endpoint.key], float(getattr(endpoint, attribute)))
            throttled.add_metric([endpoint.key], endpoint.throttled_total)
        yield from families.values()
        yield throttled

        yield _histogram(
            "rhesis_test_duration_seconds",
            "Duration of tests, observed when their run finished.",
            "test_duration_seconds",
            histograms.TEST_DURATION_BUCKETS,
            totals,
        )
        yield _histogram(
            "rhesis_callback_latency_seconds",
            "From the commit of a run's last outcome to its callback finishing the run.",
            "callback_latency_seconds",
            histograms.CALLBACK_LATENCY_BUCKETS,
            totals,
        )
        yield _scores(totals)


def _histogram(
    name: str, documentation: str, key: str, bounds: tuple[float, ...], totals: dict[Any, float]
) -> HistogramMetricFamily:
    buckets = [
        (_le(bound), totals.get((f"{key}_bucket", _pg_float(bound)), 0.0)) for bound in bounds
    ]
    count = totals.get((f"{key}_count", ""), 0.0)
    buckets.append(("+Inf", count))
    return HistogramMetricFamily(
        name, documentation, buckets=buckets, sum_value=totals.get((f"{key}_sum", ""), 0.0)
    )


def _scores(totals: dict[Any, float]) -> HistogramMetricFamily:
    """Metric scores per metric name, observed when each run finished: one histogram per
    name (a label per run would make a series per run: unbounded)."""
    family = HistogramMetricFamily(
        "rhesis_metric_score",
        "Scores (0 to 1) that metrics gave, per metric name, observed when their run finished.",
        labels=["metric"],
    )
    names = sorted(labels for (key, labels) in totals if key == "metric_score_count")
    for name in names:
        buckets = [
            (_le(b), totals.get(("metric_score_bucket", f"{name}\t{_pg_float(b)}"), 0.0))
            for b in histograms.SCORE_BUCKETS
        ]
        buckets.append(("+Inf", totals[("metric_score_count", name)]))
        family.add_metric([name], buckets, totals.get(("metric_score_sum", name), 0.0))
    return family


def _le(bound: float) -> str:
    return repr(float(bound))


def _pg_float(bound: float) -> str:
    """A bucket bound as Postgres writes a double precision as text (its label)."""
    return f"{bound:g}" if float(bound) != int(bound) else str(int(bound))


def exposition(organization_id: str | None = None) -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(organization_id))
    return generate_latest(registry), CONTENT_TYPE_LATEST
