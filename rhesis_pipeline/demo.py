"""``rhesis-pipeline demo``: the whole product on one machine, in under a minute.

Migrates the database (embedded unless DATABASE_URL is set), starts real dramatiq
worker processes and a local chat-like endpoint (:mod:`rhesis_pipeline.demo_target`),
runs the bundled suite with live progress, prints the summary, and always stops the
workers. Each test of the demo suite says in ``expect`` how it should end (passed,
failed or error); the demo exits 0 when every test did.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click

from rhesis_pipeline.storage import engine, migrate


def bundled_suite() -> Path:
    return Path(str(resources.files("rhesis_pipeline.examples").joinpath("demo-suite.yaml")))


class Workers:
    """``dramatiq rhesis_pipeline.actors`` as a child process group; always stopped."""

    def __init__(self, *, processes: int, threads: int, database_url: str) -> None:
        self.processes = processes
        self.log = Path(tempfile.mkstemp(prefix="rhesis-demo-workers-", suffix=".log")[1])
        env = {**os.environ, "DATABASE_URL": database_url}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dramatiq",
                    "rhesis_pipeline.actors",
                    "-p",
                    str(processes),
                    "-t",
                    str(threads),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.log.read_text(errors="replace").count("ready for action") < self.processes:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                raise click.ClickException(f"the demo workers did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _judged_by(test: dict[str, Any], url: str) -> dict[str, Any]:
    """*test* with every llm_judge metric's endpoint pointed at the local fake judge."""
    metrics = test.get("metrics")
    if not isinstance(metrics, list):
        return test
    return {
        **test,
        "metrics": [
            {**m, "endpoint": {**m["endpoint"], "url": url}}
            if isinstance(m, dict) and m.get("type") == "llm_judge"
            else m
            for m in metrics
        ],
    }


def run_demo(*, suite_path: str | None = None, processes: int = 2, threads: int = 8) -> int:
    from rhesis_pipeline.demo_judge import FakeJudge
    from rhesis_pipeline.demo_target import ChatTarget
    from rhesis_pipeline.runs.read import get_results, running_members
    from rhesis_pipeline.runs.report import ProgressPrinter, summary_text, wait_for
    from rhesis_pipeline.runs.submit import launch_test_run
    from rhesis_pipeline.suites.load import load_suite

    started = time.monotonic()
    before, after = migrate.upgrade()
    click.echo(f"1. database migrated ({before or 'empty'} -> {after})", err=True)
    suite = load_suite(suite_path or bundled_suite())
    workers = Workers(processes=processes, threads=threads, database_url=engine.database_url())
    try:
        with ChatTarget() as target, FakeJudge() as judge:
            click.echo(f"2. chat endpoint at {target.url}, fake LLM judge at {judge.url}", err=True)
            workers.wait_ready()
            click.echo(
                f"3. {processes} worker processes x {threads} threads ready (log: {workers.log})",
                err=True,
            )
            endpoint = dict(suite.endpoint)
            if endpoint["type"] == "http":
                endpoint["url"] = target.url
            run_id = launch_test_run(
                [_judged_by(test, judge.url) for test in suite.tests],
                executor=endpoint,
                name=suite.name,
                organization_id="demo-org",
                user_id="demo-user",
                options=suite.options,
            )
            click.echo(f"4. run {run_id}: {len(suite.tests)} tests of {suite.name!r}", err=True)
            finished = wait_for(
                run_id, timeout_s=120, progress=ProgressPrinter(running=running_members)
            )
    finally:
        workers.stop()
    click.echo(summary_text(run_id))
    if not finished:
        click.echo("demo: the run did not finish within 120 s", err=True)
        return 1
    expected = {t["id"]: t.get("expect", "passed") for t in suite.tests}
    wrong = [
        (r["test_id"], expected[r["test_id"]], r["status"])
        for r in get_results(run_id)
        if r["status"] != expected[r["test_id"]]
    ]
    took = time.monotonic() - started
    if wrong:
        for test_id, want, got in wrong:
            click.echo(f"demo: {test_id} ended {got}, expected {want}", err=True)
        return 1
    click.echo(
        f"\ndemo ran as designed in {took:.1f}s: every test ended as expected "
        "(the failures above are on purpose).",
        err=True,
    )
    return 0
