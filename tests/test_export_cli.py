"""``rhesis-pipeline show --format/--output`` and ``run --wait --junit/--output``: files
written whole or not at all, bad input as one line and exit 2 before any work."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from rhesis_pipeline.cli import pipeline
from rhesis_pipeline.runs.export import csv_out

from .support import cli
from .support.exports import mixed_run, read_junit
from .support.runs import scalar

ORDER = ["ok", "bad", "boom", "gone", "revoked", "waiting"]


@pytest.fixture
def invoke(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*args: str):
        return CliRunner().invoke(pipeline.main, list(args))

    return run


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_show_writes_each_format_to_stdout_or_a_file(invoke, tmp_path):
    run_id = mixed_run()
    out = invoke("show", run_id, "--format", "junit")
    assert out.exit_code == 0, out.output
    assert [c.name for c in read_junit(out.stdout_bytes)] == ORDER

    target = tmp_path / "r.csv"
    out = invoke("show", run_id[:8], "--format", "csv", "--output", str(target))
    assert out.exit_code == 0 and out.stdout == "", out.output
    rows = list(csv.reader(io.StringIO(target.read_text("utf-8"), newline="")))
    assert [r[0] for r in rows[1:]] == ORDER

    # Without --format, the file's extension says it.
    out = invoke("show", run_id, "--output", str(tmp_path / "r.jsonl"))
    assert out.exit_code == 0, out.output
    lines = (tmp_path / "r.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(ln)["test_id"] for ln in lines] == ORDER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.jsonl"]  # no temp files


@pytest.mark.parametrize(
    "args, says",
    [
        (["--format", "xml"], "Invalid value for '--format'"),
        (["--output", "{tmp}/r.txt"], "cannot tell the format of"),
        (["--format", "csv", "--output", "{tmp}/missing/r.csv"], "does not exist"),
        (["--format", "csv", "--output", "{tmp}"], "is a directory"),
        (["--format", "csv", "--output", "/proc/r.csv"], "cannot write /proc/r.csv"),
        (["--format", "junit", "--json"], "exclude each other"),
    ],
)
def test_bad_export_options_are_one_line_and_exit_2(invoke, tmp_path, args, says):
    run_id = mixed_run()
    out = invoke("show", run_id, *[a.format(tmp=tmp_path) for a in args])
    assert out.exit_code == 2, out.output
    assert says in one_error_line(out)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_run_or_another_tenants_is_exit_2_and_leaves_no_file(invoke, tmp_path):
    run_id = mixed_run(organization_id="org-a")
    for args in (
        ["00000000-0000-0000-0000-000000000000", "--format", "junit"],
        [run_id, "--format", "junit", "--org", "org-b"],
        [run_id, "--output", str(tmp_path / "r.xml"), "--org", "org-b"],
    ):
        out = invoke("show", *args)
        assert out.exit_code == 2, out.output
        assert "no test run with id" in one_error_line(out)
        assert out.stdout == ""
    assert list(tmp_path.iterdir()) == []
    assert invoke("show", run_id, "--format", "csv", "--org", "org-a").exit_code == 0


def test_a_failed_export_leaves_the_old_file_and_no_temporary_file(invoke, tmp_path, monkeypatch):
    run_id = mixed_run()
    target = tmp_path / "r.csv"
    target.write_text("the previous report")
    calls = []

    def row_then_fail(result, names):
        calls.append(result["test_id"])
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_row(result, names)

    real_row = csv_out._row
    monkeypatch.setattr(csv_out, "_row", row_then_fail)
    out = invoke("show", run_id, "--output", str(target))
    assert out.exit_code == 2 and "No space left on device" in one_error_line(out)
    assert target.read_text() == "the previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


SUITE = """
name: exported
endpoint: {type: python, target: "tests.support.targets:echo"}
tests:
  - {id: good, prompt: "=1+2"}
  - {id: bad, prompt: hi, expect_pass: false}
"""


@pytest.mark.parametrize(
    "args, says",
    [
        (["--junit", "{tmp}/r.xml"], "add --wait"),
        (["--wait", "--output", "{tmp}/r.xml"], "name the file with .csv, .jsonl"),
        (["--wait", "--junit", "{tmp}/no/r.xml"], "does not exist"),
        (["--wait", "--junit", "{tmp}/r.csv", "--output", "{tmp}/r.csv"], "the same file"),
    ],
)
def test_run_refuses_bad_outputs_before_submitting(invoke, tmp_path, args, says):
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(SUITE))
    out = invoke("run", str(suite), *[a.format(tmp=tmp_path) for a in args])
    assert out.exit_code == 2, out.output
    assert says in one_error_line(out)
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]


def test_show_format_as_a_real_command(database_url, tmp_path):
    run_id = mixed_run()
    out = cli.run("rhesis-pipeline", "show", run_id, "--format", "junit",
                  env={"DATABASE_URL": database_url})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert read_junit(out.stdout.encode("utf-8")).tests == 6


@pytest.mark.slow
def test_run_wait_writes_junit_and_csv_when_the_run_finishes(workers, database_url, tmp_path):
    workers.start(processes=1, threads=2)
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(SUITE))
    junit, table = tmp_path / "out" / "r.xml", tmp_path / "out" / "r.csv"
    junit.parent.mkdir()
    out = cli.run("rhesis-pipeline", "run", str(suite), "--wait", "--junit", str(junit),
                  "--output", str(table), env={"DATABASE_URL": database_url})  # fmt: skip
    assert out.returncode == 1, out.stderr  # one test fails
    assert "wrote junit results of run" in out.stderr
    suite_xml = read_junit(junit.read_bytes())
    assert (suite_xml.name, suite_xml.tests, suite_xml.failures, suite_xml.errors) == (
        "exported",
        2,
        1,
        0,
    )
    assert [c.name for c in suite_xml] == ["good", "bad"]
    rows = list(csv.reader(io.StringIO(table.read_text("utf-8"), newline="")))
    assert [r[:2] for r in rows[1:]] == [["good", "passed"], ["bad", "failed"]]
    assert rows[1][-1] == "'=1+2"  # the answer, guarded against formula injection


@pytest.mark.slow
def test_the_export_benchmark_runs_small(database_url):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "benchmarks/export.py", "--tests", "500"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "BENCH_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "junitparser: 500 cases, 50 failures, 10 errors" in result.stdout
    assert "valid against tests/data/junit.xsd" in result.stdout
    assert "csv.reader: 500 rows" in result.stdout and "json.loads: 500 lines" in result.stdout


def test_a_reader_that_stops_early_stops_the_export_quietly(database_url):
    """``show … --format jsonl | head -1``: the closed pipe ends the export, without a
    traceback."""
    import os
    import subprocess

    from rhesis_pipeline.runs.submit import launch_test_run

    run_id = launch_test_run(
        [{"id": i} for i in range(5000)], executor="tests.support.targets:echo"
    )
    proc = subprocess.Popen(
        [cli.script("rhesis-pipeline"), "show", run_id, "--format", "jsonl"],
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert json.loads(proc.stdout.readline())["test_id"] == "0"
    proc.stdout.close()  # as head does after its line
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 141 and b"Traceback" not in stderr, stderr.decode()
