"""Retention of finished queue rows: PurgeFinishedMessages.run_once on a real database."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from rhesis_pipeline import db
from rhesis_pipeline.maintenance import PurgeConfig, PurgeFinishedMessages
from rhesis_pipeline.maintenance.purge import LOCK_KEY

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


def purge(**config) -> PurgeFinishedMessages:
    return PurgeFinishedMessages(PurgeConfig(**config), clock=lambda: NOW, sleep=lambda s: None)


def test_deletes_only_finished_rows_past_retention_in_batches(database_url):
    insert("done", timedelta(days=8), n=25)
    insert("rejected", timedelta(days=30), n=5)
    insert("done", timedelta(days=1), n=3)  # too recent
    insert("queued", timedelta(days=90), n=2)  # never purged: still to do
    insert("consumed", timedelta(days=90), n=1)

    result = purge(retention=timedelta(days=7), batch_size=10).run_once()

    assert result.deleted == 30
    assert result.batches == 4  # 10 + 10 + 10 full batches, then a short (empty) one ends it
    assert counts() == {"done": 3, "queued": 2, "consumed": 1}


def test_second_run_changes_nothing(database_url):
    insert("done", timedelta(days=8), n=4)
    assert purge(retention=timedelta(days=7)).run_once().deleted == 4
    again = purge(retention=timedelta(days=7)).run_once()
    assert again.deleted == 0 and not again.skipped


def test_a_purge_already_running_makes_the_second_one_skip(database_url):
    insert("done", timedelta(days=8), n=2)
    with db.begin() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        result = purge(retention=timedelta(days=7)).run_once()
    assert result.skipped and result.deleted == 0
    assert counts() == {"done": 2}


@pytest.mark.parametrize(
    "bad",
    [{"retention": timedelta(seconds=-1)}, {"batch_size": 0}, {"pause_s": -1}, {"max_batches": 0}],
)
def test_config_is_validated(bad):
    with pytest.raises(ValueError):
        PurgeConfig(**bad)
