"""Bad input, as a user types it, gets exit 2 and one line naming the problem: never a
traceback, and nothing already stored is lost (issue #11).

Each case is what was seen to print a traceback, hang, or be accepted and fail later:
suites holding NUL or lone surrogates, a YAML alias bomb, an empty file, duplicate keys,
URLs that do not parse, inconsistent or non-finite numbers, and non-finite or
out-of-range values of every numeric option of both CLIs.
"""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from rhesis_pipeline.cli import monitor, pipeline
from rhesis_pipeline.suites.load import load_suite
from rhesis_pipeline.suites.schema import InvalidSuite

from .support import cli
from .support.runs import scalar

PY = 'endpoint: {type: python, target: "tests.support.targets:noop"}\n'
PY_JSON = {"type": "python", "target": "tests.support.targets:noop"}


def yaml_suite(tests: str = "  - {id: a, prompt: hi}\n", *, head: str = "name: x\n" + PY) -> str:
    return head + "tests:\n" + tests


def json_suite(**changes) -> str:
    data = {"name": "x", "endpoint": PY_JSON, "tests": [{"id": "a", "prompt": "hi"}], **changes}
    return json.dumps(data)


def http_suite(url: str) -> str:
    return yaml_suite(head=f"name: x\nendpoint: {{type: http, url: '{url}'}}\n")


#: Seven levels of nine aliases: about 5 million strings once expanded (49 s, 1.8 GB).
ALIAS_BOMB = yaml_suite(
    "  - id: a\n"
    + "".join(
        f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(7)
    )
)


@dataclass
class Case:
    id: str
    program: str  # rhesis-pipeline or rhesis-monitor
    args: list[str]  # "{suite}" is replaced by the path of the suite file
    fragment: str  # the one line names this
    suite: str | None = None  # contents of the suite file, if any
    suite_name: str = "suite.yaml"
    env: dict[str, str] = field(default_factory=dict)  # set: run as a real subprocess
    code: int = 2


def run_suite(id_: str, text: str, fragment: str, name: str = "suite.yaml") -> Case:
    return Case(id_, "rhesis-pipeline", ["run", "{suite}", "--wait"], fragment, text, name)


CASES = [
    # -- suites: NUL and lone surrogates, in values and keys, refused naming the field
    run_suite(
        "nul-in-prompt",
        yaml_suite('  - {id: a, prompt: "a\\0b"}\n'),
        "tests[0].prompt contains a NUL character",
    ),
    run_suite("nul-in-id", yaml_suite('  - {id: "a\\0"}\n'), "tests[0].id contains a NUL"),
    run_suite("nul-in-name", yaml_suite(head='name: "x\\0"\n' + PY), "name contains a NUL"),
    run_suite(
        "nul-in-a-key",
        yaml_suite('  - {id: a, "ctx\\0": 1}\n'),
        "tests[0]: the key 'ctx\\x00' contains a NUL",
    ),
    run_suite(
        "surrogate-in-prompt",
        json_suite(tests=[{"id": "a", "prompt": "a\ud800"}]),
        "tests[0].prompt contains a lone surrogate",
        "suite.json",
    ),
    run_suite(  # libyaml refuses the escape itself, at its position
        "surrogate-escape-in-yaml",
        yaml_suite('  - {id: a, prompt: "a\\ud800"}\n'),
        "invalid Unicode character escape code at line 4",
    ),
    run_suite(
        "surrogate-in-id",
        json_suite(tests=[{"id": "\ud800"}]),
        "tests[0].id contains a lone surrogate",
        "suite.json",
    ),
    run_suite(
        "surrogate-in-name",
        json_suite(name="x\udfff"),
        "name contains a lone surrogate",
        "suite.json",
    ),
    # -- suites: the file itself
    run_suite("alias-bomb", ALIAS_BOMB, "expands aliases past"),
    run_suite("empty-file", "", "the file is empty"),
    run_suite("only-comments", "# to do\n", "the file is empty"),
    run_suite(
        "duplicate-yaml-key",
        "name: x\nname: y\n" + PY + "tests: [{id: a}]\n",
        "duplicate key 'name' at line 2",
    ),
    run_suite(
        "duplicate-json-key",
        '{"name": "x", "name": "y", "endpoint": {"type": "python", '
        '"target": "tests.support.targets:noop"}, "tests": [{"id": "a"}]}',
        "duplicate key 'name'",
        "suite.json",
    ),
    run_suite(
        "nested-too-deeply", "[" * 100_000 + "]" * 100_000, "nested too deeply", "suite.json"
    ),
    run_suite("oversized-file", "x" * (11 * 1024 * 1024), "larger than"),
    run_suite("integer-of-5000-digits", yaml_suite(f"  - {{id: {'9' * 5000}}}\n"), "5000 digits"),
    # -- suites: URLs that do not parse
    run_suite("url-with-space", http_suite("http://exa mple.com/chat"), "contains a space"),
    run_suite("url-with-port-99999", http_suite("http://example.com:99999/chat"), "port 99999"),
    # -- suites: numbers
    run_suite(
        "min-backoff-above-max",
        yaml_suite(
            head="name: x\n" + PY + "defaults: {min_backoff_ms: 5000, max_backoff_ms: 100}\n"
        ),
        "defaults.max_backoff_ms: 100 is less than defaults.min_backoff_ms (5000)",
    ),
    run_suite(
        "max-backoff-below-default-min",
        yaml_suite(head="name: x\n" + PY + "defaults: {max_backoff_ms: 500}\n"),
        "defaults.max_backoff_ms: 500 is less than defaults.min_backoff_ms (1000",
    ),
    run_suite(
        "nan-timeout",
        json_suite(endpoint={"type": "http", "url": "http://a/", "timeout_s": float("nan")}),
        "endpoint.timeout_s: nan is not a finite number",
        "suite.json",
    ),
    run_suite(
        "infinite-latency-bound",
        yaml_suite("  - {id: a, metrics: [{type: max_latency_ms, value: .inf}]}\n"),
        "tests[0].metrics[0].value: inf is not a finite number",
    ),
    run_suite(
        "time-limit-1e308",
        json_suite(defaults={"time_limit_s": 1e308}),
        "defaults.time_limit_s",
        "suite.json",
    ),
    # -- options: non-finite and out-of-range numbers
    Case("run-timeout-nan", "rhesis-pipeline", ["run", "x.yaml", "--timeout", "nan"], "--timeout"),
    Case("run-timeout-inf", "rhesis-pipeline", ["run", "x.yaml", "--timeout", "inf"], "--timeout"),
    Case("check-max-hours-nan", "rhesis-monitor", ["check", "--max-hours", "nan"], "--max-hours"),
    Case("check-max-hours-inf", "rhesis-monitor", ["check", "--max-hours", "inf"], "--max-hours"),
    Case("status-max-hours-1e308", "rhesis-monitor", ["status", "--max-hours", "1e308"], "1e308"),
    Case("health-max-hours-1e308", "rhesis-monitor", ["health", "--max-hours", "1e308"], "1e308"),
    Case(
        "revoke-max-hours-nan",
        "rhesis-monitor",
        ["revoke", "--max-hours", "nan", "--dry-run"],
        "--max-hours",
    ),
    Case(
        "fix-stuck-minutes-nan",
        "rhesis-monitor",
        ["fix", "--dry-run", "--stuck-minutes", "nan"],
        "--stuck-minutes",
    ),
    Case(
        "fix-auto-revoke-hours-inf",
        "rhesis-monitor",
        ["fix", "--dry-run", "--auto-revoke-hours", "inf"],
        "--auto-revoke-hours",
    ),
    Case(
        "serve-health-max-hours-nan",
        "rhesis-monitor",
        ["serve-health", "--port", "0", "--max-hours", "nan"],
        "--max-hours",
    ),
    Case(
        "max-hours-nan-from-the-environment",
        "rhesis-monitor",
        ["check"],
        "--max-hours",
        env={"RHESIS_CHECK_MAX_HOURS": "nan"},
    ),
    Case(
        "setting-retention-inf",
        "rhesis-monitor",
        ["sweep", "--dry-run"],
        "RHESIS_QUEUE_RETENTION_HOURS",
        env={"RHESIS_QUEUE_RETENTION_HOURS": "inf"},
    ),
    Case(
        "setting-run-max-age-nan",
        "rhesis-pipeline",
        ["check"],
        "RHESIS_RUN_MAX_AGE_HOURS",
        env={"RHESIS_RUN_MAX_AGE_HOURS": "nan"},
    ),
    # -- options: text that cannot be stored
    Case(
        "org-not-valid-text",
        "rhesis-pipeline",
        ["run", "{suite}", "--org", "acme\udcff"],
        "--org",
        suite=yaml_suite(),
    ),
    # -- a queue that does not exist
    Case(
        "clean-unknown-queue",
        "rhesis-monitor",
        ["clean", "--queue", "no-such-queue", "--force"],
        "no queue named 'no-such-queue'",
        env={},
    ),
]

#: Lines around the one that names the problem: click's usage hint, the database used.
NOT_THE_PROBLEM = ("Usage: ", "Try '", "rhesis-pipeline: using database", "rhesis-monitor: using")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_exit_2_and_one_line_naming_the_problem(
    case: Case, database_url, tmp_path, monkeypatch
):
    args = list(case.args)
    if case.suite is not None:
        path = tmp_path / case.suite_name
        path.write_text(case.suite, encoding="utf-8", errors="surrogatepass")
        args = [str(path) if a == "{suite}" else a for a in args]
    monkeypatch.chdir(tmp_path)

    if case.env or (case.program == "rhesis-monitor" and args[0] == "clean"):
        # As a real subprocess: settings are read from the environment at start.
        out = cli.run(case.program, *args, env={"DATABASE_URL": database_url, **case.env})
        code, stderr = out.returncode, out.stderr
    else:
        monkeypatch.setenv("DATABASE_URL", database_url)
        main = pipeline.main if case.program == "rhesis-pipeline" else monitor.main
        result = CliRunner().invoke(main, args, prog_name=case.program)
        code, stderr = result.exit_code, result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += f"\nTraceback: {type(result.exception).__name__}: {result.exception}"

    assert "Traceback" not in stderr, stderr
    assert code == case.code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    problem = [line for line in lines if not line.startswith(NOT_THE_PROBLEM)]
    assert len(problem) == 1, stderr
    assert case.fragment in problem[0], problem[0]
    # Nothing was submitted, nothing was lost.
    assert scalar("SELECT count(*) FROM rhesis.test_runs") == 0
    assert scalar("SELECT count(*) FROM dramatiq.queue") == 0


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    # Expanded, the bomb would take gigabytes (and minutes): refused with a few MB.
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidSuite, match="expands aliases past"):
            load_suite(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


def test_aliases_and_merge_keys_within_the_bound_still_load(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "name: anchors\n" + PY + "tests:\n"
        "  - &first {id: a, prompt: hi, metrics: &m [{type: contains, value: hi}]}\n"
        "  - {<<: *first, id: b}\n"
        "  - {id: c, prompt: yo, metrics: *m}\n"
    )
    suite = load_suite(path)
    assert [t["id"] for t in suite.tests] == ["a", "b", "c"]
    assert suite.tests[1]["prompt"] == "hi"
    assert suite.tests[2]["metrics"] == suite.tests[0]["metrics"]
