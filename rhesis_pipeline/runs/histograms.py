"""The histograms kept in ``rhesis.metric_totals``: their buckets, and how a finished run
is observed. Written by the completion callback (:func:`rhesis_pipeline.runs.complete.finish_run`),
read by the Prometheus exposition (:mod:`rhesis_pipeline.monitor.prometheus`).

Kept in the database, not in a process: one scrape sees every worker's observations, and
they survive restarts and the retention that deletes the runs they came from.
"""

from __future__ import annotations

from typing import Any

from rhesis_pipeline.storage.queries import Q

#: Upper bounds (seconds) of the test-duration histogram's buckets.
TEST_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Upper bounds (seconds) of the callback-latency histogram's buckets (from the commit of a
#: run's last outcome to the callback finishing the run).
#: Upper bounds of the metric-score histogram's buckets (scores are in [0, 1]).
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1)
CALLBACK_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def observe_finished_run(conn: Any, run_id: str, callback_latency_ms: float | None) -> None:
    """Add run *run_id*'s test durations, its callback latency and its metrics' scores
    (per metric name) to the histograms, in
    *conn*'s transaction (the one that finishes the run: observed exactly once)."""
    conn.execute(
        Q["observe_finished_run"],
        {
            "run_id": run_id,
            "duration_buckets": list(TEST_DURATION_BUCKETS),
            "latency_buckets": list(CALLBACK_LATENCY_BUCKETS),
            "score_buckets": list(SCORE_BUCKETS),
            "latency_s": None if callback_latency_ms is None else callback_latency_ms / 1000,
        },
    )
