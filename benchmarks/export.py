"""Exports of a 100,000-test run: wall time and peak memory of the command, per format.

    python benchmarks/export.py [--tests 100000] [--formats junit csv jsonl] [--no-validate]

Makes a run of --tests tests without workers (submitted as users do, then every outcome
set in bulk by SQL: 1 in 10 failed, 1 in 50 errored, the rest passed; two metrics each, a
scored ``tone`` with a threshold and an old-style ``contains`` without a score; a
~100-character answer), then runs ``rhesis-pipeline show RUN --format F --output FILE``
as a subprocess per format and prints its wall time, its peak RSS (``wait4``'s
``ru_maxrss`` of that process) and the file's size. Target (issue #24): the JUnit
export's peak RSS under 150 MB. Then checks each file as its consumers read it:
junitparser reads --tests cases with the right failure and error counts (and, unless
--no-validate, xmlschema validates it against tests/data/junit.xsd), csv.reader reads
--tests rows, every JSONL line parses. Exits 1 if a check or the target fails.

Uses BENCH_DATABASE_URL, else the local server, else an embedded one; makes and drops its
own database.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, fresh_database, machine, submit_noop

#: Peak RSS the JUnit export of a 100,000-test run must stay under (issue #24), MiB.
TARGET_MIB = 150

FILL_OUTCOMES = """
UPDATE rhesis.test_results r SET
    status = o.status,
    attempts = 1 + (r.position % 3),
    duration_ms = 200 + (r.position % 1800),
    worker = 'bench',
    started_at = now() - interval '1 minute',
    finished_at = now(),
    output = to_jsonb('The capital of France is Paris; answer ' || r.position
                      || ' of the benchmark run, with some words to make it ~100 characters.'),
    error = CASE WHEN o.status = 'error' THEN
        E'Traceback (most recent call last):\\n  File "target.py", line 1\\nTimeoutError: '
        || 'no answer within 30 s' END,
    metrics = CASE WHEN o.status = 'error' THEN NULL ELSE jsonb_build_array(
        jsonb_build_object('type', 'llm_judge', 'name', 'tone',
                           'passed', o.status = 'passed',
                           'reason', CASE WHEN o.status = 'passed' THEN 'polite and on topic'
                                          ELSE 'rude: "<&>" ]]> in the answer' END,
                           'score', CASE WHEN o.status = 'passed' THEN 0.9 ELSE 0.2 END,
                           'threshold', 0.7),
        jsonb_build_object('type', 'contains', 'name', 'contains', 'passed', true,
                           'reason', 'answer contains ''Paris''')) END
FROM (SELECT test_id, CASE WHEN position % 10 = 3 THEN 'failed'
                           WHEN position % 50 = 7 THEN 'error' ELSE 'passed' END AS status
      FROM rhesis.test_results WHERE run_id = :run_id) o
WHERE r.run_id = :run_id AND r.test_id = o.test_id
"""

FINISH_RUN = """
UPDATE rhesis.test_runs u SET
    status = CASE WHEN c.errored > 0 THEN 'PARTIAL' ELSE 'COMPLETED' END,
    done = c.total, passed = c.passed, failed = c.failed, errored = c.errored,
    started_at = now() - interval '1 minute', finished_at = now(), last_progress_at = now()
FROM (SELECT count(*) AS total,
             count(*) FILTER (WHERE status = 'passed') AS passed,
             count(*) FILTER (WHERE status = 'failed') AS failed,
             count(*) FILTER (WHERE status = 'error') AS errored
      FROM rhesis.test_results WHERE run_id = :run_id) c
WHERE u.id = :run_id
RETURNING c.failed, c.errored
"""


def make_run(n: int) -> tuple[str, int, int]:
    """A finished run of *n* tests (no workers): (run id, failed, errored)."""
    from sqlalchemy import text

    from rhesis_pipeline.storage import db

    run_id = submit_noop(n, f"export-{n}")
    with db.begin() as conn:
        conn.execute(text(FILL_OUTCOMES), {"run_id": run_id})
        failed, errored = conn.execute(text(FINISH_RUN), {"run_id": run_id}).one()
        # The members' messages would be a worker's to consume: this run has none.
        conn.execute(text("DELETE FROM dramatiq.queue"))
    return run_id, int(failed), int(errored)


#: Runs argv[1:] and prints its exit code and peak RSS (KiB). A child's ``ru_maxrss``
#: counts the memory of the process it was forked from (the pages it shared until it
#: exec'd): forked from this benchmark, whose checks grow it past 100 MiB, the command
#: would be charged for them. Forked from this small fresh interpreter, it is not.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def export(url: str, run_id: str, fmt: str, path: Path) -> tuple[float, float]:
    """Run the export command; (wall seconds, peak RSS MiB) of its process."""
    command = [str(Path(sys.executable).parent / "rhesis-pipeline"), "show", run_id,
               "--format", fmt, "--output", str(path)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        env={**os.environ, "DATABASE_URL": url},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    code, maxrss_kib = (int(v) for v in done.stdout.split())
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}: {done.stderr.strip()}")
    return wall, maxrss_kib / 1024


def check(fmt: str, path: Path, n: int, failed: int, errored: int, validate: bool) -> str:
    """What a consumer reads in the file (raises SystemExit if it is not what was made)."""
    if fmt == "junit":
        from junitparser.xunit2 import JUnitXml

        started = time.perf_counter()
        (suite,) = list(JUnitXml.fromfile(str(path)))
        cases = failures = errors = 0
        for case in suite:
            cases += 1
            kinds = {type(r).__name__ for r in case.result}
            failures += "Failure" in kinds
            errors += "Error" in kinds
        found = (suite.tests, cases, suite.failures, failures, suite.errors, errors)
        if found != (n, n, failed, failed, errored, errored):
            raise SystemExit(f"junitparser read (tests, cases, failures x2, errors x2) {found}")
        said = f"junitparser: {cases:,} cases, {failures:,} failures, {errors:,} errors"
        said += f" ({time.perf_counter() - started:.1f} s)"
        if validate:
            import xmlschema

            started = time.perf_counter()
            xmlschema.XMLSchema(str(REPO / "tests/data/junit.xsd")).validate(str(path))
            said += f"; valid against tests/data/junit.xsd ({time.perf_counter() - started:.1f} s)"
        return said
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = sum(1 for _ in csv.reader(f)) - 1
        if rows != n:
            raise SystemExit(f"csv.reader read {rows} rows, not {n}")
        return f"csv.reader: {rows:,} rows"
    with path.open(encoding="utf-8") as f:
        lines = sum(1 for line in f if json.loads(line))
    if lines != n:
        raise SystemExit(f"{lines} JSON lines, not {n}")
    return f"json.loads: {lines:,} lines"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=100_000)
    parser.add_argument("--formats", nargs="+", default=["junit", "csv", "jsonl"],
                        choices=["junit", "csv", "jsonl"])  # fmt: skip
    parser.add_argument("--no-validate", action="store_true", help="skip the XSD validation")
    args = parser.parse_args()
    if args.tests < 1:
        parser.error("--tests must be positive")
    ok = True
    with fresh_database() as (url, where), tempfile.TemporaryDirectory() as tmp:
        print(f"machine: {machine()}; database: {where}")
        started = time.perf_counter()
        run_id, failed, errored = make_run(args.tests)
        print(f"run of {args.tests:,} tests ({failed:,} failed, {errored:,} errored) made in "
              f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        for fmt in args.formats:
            path = Path(tmp) / f"run.{'xml' if fmt == 'junit' else fmt}"
            wall, rss = export(url, run_id, fmt, path)
            size = path.stat().st_size / 2**20
            verdict = ""
            if fmt == "junit":
                verdict = f" (target < {TARGET_MIB} MiB: {'ok' if rss < TARGET_MIB else 'FAILED'})"
                ok = ok and rss < TARGET_MIB
            print(f"{fmt:>5}: {wall:.1f} s, peak RSS {rss:.0f} MiB{verdict}, "
                  f"file {size:.1f} MiB", flush=True)  # fmt: skip
            print(f"       {check(fmt, path, args.tests, failed, errored, not args.no_validate)}",
                  flush=True)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
