"""`dramatiq rhesis_pipeline.actors` run directly on a database that is not migrated says
so once and exits, like `rhesis-pipeline worker` (it used to log tracebacks every 3 s)."""

from __future__ import annotations

import pytest

from rhesis_pipeline.storage.migrate import head_revision

from .support.workers import WorkerPool


@pytest.mark.slow
def test_dramatiq_on_an_unmigrated_database_says_so_once_and_exits(empty_database_url, tmp_path):
    # Given: plain dramatiq with two worker processes on a database never migrated.
    pool = WorkerPool(database_url=empty_database_url, log_dir=tmp_path)
    try:
        worker = pool.start(processes=2, modules=("rhesis_pipeline.actors",), wait=False)

        # When: it boots.
        code = worker.proc.wait(timeout=60)

        # Then: it exits with "not migrated" (4), saying so in one line, once.
        log = worker.log()
        assert code == 4, log
        said = [line for line in log.splitlines() if "is not migrated" in line]
        assert len(said) == 1, log
        assert said[0].endswith(
            "is not migrated: run `rhesis-pipeline migrate` (or the Procfile's release step); "
            f"it has no schema revision, this version needs {head_revision()}; "
            "this worker stops (exit code 4)"
        )
        assert "Traceback" not in log and "does not exist" not in log
        assert "Worker process is ready for action" not in log
    finally:
        pool.stop_all()
