"""Retention of finished queue rows and expired rate-limit keys, on a real database."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from rhesis_pipeline.maintenance import Retention, RetentionConfig
from rhesis_pipeline.storage import db
from rhesis_pipeline.storage.locks import RETENTION_LOCK_KEY

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def insert(state: str, age: timedelta, n: int = 1) -> None:
    # mtime is stored the way dramatiq-pg stores it: UTC wall time.
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dramatiq.queue (message_id, queue_name, state, message, mtime) "
                "SELECT gen_random_uuid(), 'q', CAST(:state AS dramatiq.state), '{}', "
                "(CAST(:at AS timestamptz) AT TIME ZONE 'UTC') FROM generate_series(1, :n)"
            ),
            {"state": state, "at": NOW - age, "n": n},
        )


def counts() -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT state::text, count(*) FROM dramatiq.queue GROUP BY 1"))
        return dict(rows.all())


def purge(**config) -> Retention:
    return Retention(RetentionConfig(**config), clock=lambda: NOW, sleep=lambda s: None)


def test_deletes_only_finished_rows_past_retention_in_batches(database_url):
    insert("done", timedelta(days=8), n=25)
    insert("rejected", timedelta(days=30), n=5)
    insert("done", timedelta(days=1), n=3)  # too recent
    insert("queued", timedelta(days=90), n=2)  # never purged: still to do
    insert("consumed", timedelta(days=90), n=1)

    result = purge(message_retention=timedelta(days=7), batch_size=10).run_once()

    assert result.messages == 30
    # 10 + 10 + 10 full batches, then a short (empty) one ends the step; one each for
    # rate-limit keys and dead workers
    assert result.batches == 6
    assert counts() == {"done": 3, "queued": 2, "consumed": 1}


def test_second_run_changes_nothing(database_url):
    insert("done", timedelta(days=8), n=4)
    assert purge(message_retention=timedelta(days=7)).run_once().messages == 4
    again = purge(message_retention=timedelta(days=7)).run_once()
    assert again.messages == 0 and not again.skipped


def test_a_purge_already_running_makes_the_second_one_skip(database_url):
    insert("done", timedelta(days=8), n=2)
    with db.begin() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RETENTION_LOCK_KEY})
        result = purge(message_retention=timedelta(days=7)).run_once()
    assert result.skipped and result.messages == 0
    assert counts() == {"done": 2}


@pytest.mark.parametrize(
    "bad",
    [
        {"message_retention": timedelta(seconds=-1)},
        {"batch_size": 0},
        {"pause_s": -1},
        {"max_batches": 0},
    ],
)
def test_config_is_validated(bad):
    with pytest.raises(ValueError):
        RetentionConfig(**bad)


def test_expired_rate_limit_keys_are_deleted_live_ones_kept(database_url):
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rhesis.rate_limits (key, value, expires_at) VALUES "
                "('old', 1, :past), ('live', 1, :future)"
            ),
            {"past": NOW - timedelta(seconds=1), "future": NOW + timedelta(hours=1)},
        )
    assert purge().run_once().rate_limit_keys == 1
    with db.connect() as conn:
        keys = conn.execute(text("SELECT key FROM rhesis.rate_limits")).scalars().all()
    assert keys == ["live"]


def test_run_retention_deletes_runs_finished_before_it_with_their_results(database_url):
    from rhesis_pipeline.runs.submit import launch_test_run

    def finished(hours_ago: float | None, n: int) -> str:
        run_id = launch_test_run(
            [{"id": i} for i in range(n)], executor="tests.support.targets:noop"
        )
        if hours_ago is not None:
            with db.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE rhesis.test_runs SET status = 'COMPLETED', finished_at = :at"
                        " WHERE id = :id"
                    ),
                    {"at": NOW - timedelta(hours=hours_ago), "id": run_id},
                )
        return run_id

    old, recent, running = finished(50, 25), finished(1, 3), finished(None, 2)

    def left() -> dict[str, int]:
        with db.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT u.id::text, count(r.test_id) FROM rhesis.test_runs u"
                    " LEFT JOIN rhesis.test_results r ON r.run_id = u.id GROUP BY u.id"
                )
            )
            return dict(rows.all())

    # Without a run retention nothing of runs is deleted ...
    assert purge().run_once().runs == 0 and len(left()) == 3
    # ... with one of 24 hours, the run finished 50 hours ago goes, results first.
    result = purge(run_retention=timedelta(hours=24), batch_size=10).run_once()
    assert (result.results, result.runs) == (25, 1)
    assert left() == {recent: 3, running: 2}
    assert old not in left()
