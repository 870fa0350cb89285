"""The public API: ``from rhesis_pipeline import …`` gives what a web backend needs, typed
for mypy and editors, and importing it neither connects to the database nor installs a
broker."""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rhesis_pipeline
from rhesis_pipeline.runs.submit import launch_test_run

REPO = Path(__file__).resolve().parent.parent

#: What a web backend (and an operator's script) imports; nothing else is public.
PUBLIC = {
    # runs: launch, read, re-run, revoke, hooks
    "launch_test_run", "get_run", "get_results", "rerun", "revoke_runs", "RevokeOutcome",
    "on_run_finished", "RunOptions", "Run", "RunStatus", "TestStatus",
    # acting as a tenant, and the tenant context that travels with messages
    "tenant_session", "act_as_tenant", "tenant_context",
    # operations
    "check_health", "HealthReport", "find_stuck_runs",
    # traces (OpenTelemetry): whether this process traces, its provider set up
    "tracing_enabled",
    # the errors a caller catches
    "RhesisError", "InvalidSubmission", "RunNotFound", "NothingToRerun", "PermissionDenied",
    "DatabaseUnavailable", "NotMigrated", "ConfigurationError", "MessageTooLarge",
    "EmbeddedServerError",
    "__version__",
}  # fmt: skip


def test_the_public_api_is_explicit_and_eager():
    assert set(rhesis_pipeline.__all__) == PUBLIC
    assert len(rhesis_pipeline.__all__) == len(PUBLIC)  # no name listed twice
    # Every name is a real attribute of the package, not resolved lazily on access.
    assert "__getattr__" not in vars(rhesis_pipeline)
    assert all(name in vars(rhesis_pipeline) for name in PUBLIC)
    assert rhesis_pipeline.launch_test_run is launch_test_run
    # The errors are the package's own, with the one-line message the CLI prints.
    for name in PUBLIC:
        value = getattr(rhesis_pipeline, name)
        if inspect.isclass(value) and issubclass(value, Exception):
            assert issubclass(value, rhesis_pipeline.RhesisError), name


def test_importing_the_package_neither_connects_nor_installs_a_broker(tmp_path):
    # Given: a "database" that only counts connection attempts, and a fresh embedded
    # data directory that must stay unused.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        code = textwrap.dedent(
            """
            import sys
            import dramatiq.broker
            import rhesis_pipeline
            from rhesis_pipeline import *  # every public name, resolved
            assert dramatiq.broker.global_broker is None, "a broker was installed"
            assert "rhesis_pipeline.actors" not in sys.modules, "the worker entry point"
            print("imported", len(rhesis_pipeline.__all__))
            """
        )
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        # When: the package is imported with the database at that address, then without
        # any DATABASE_URL (which would start the embedded server on first use).
        for extra in (
            {"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{port}/none"},
            {"RHESIS_DATA_DIR": str(tmp_path / "data")},
        ):
            out = subprocess.run(
                [sys.executable, "-c", code],
                env={**env, **extra},
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            assert out.stdout.startswith("imported"), out.stdout
        # Then: nobody connected, and no embedded server was set up.
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_mypy_sees_the_real_signature_of_the_public_functions(tmp_path):
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "import rhesis_pipeline\n"
        "from rhesis_pipeline import get_results\n"
        "reveal_type(rhesis_pipeline.launch_test_run)\n"
        "reveal_type(get_results)\n"
    )
    out = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
            "--cache-dir", str(tmp_path / "cache"), "--follow-imports", "silent",
            "--no-error-summary", str(snippet),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    revealed = [
        line.split('Revealed type is "', 1)[1].rstrip('"')
        for line in out.stdout.splitlines()
        if "Revealed type is" in line
    ]
    assert len(revealed) == 2, out.stdout + out.stderr
    launch, results = revealed
    assert launch.startswith("def (tests: typing.Iterable[typing.Mapping[str, Any]], *, executor:")
    assert "session: sqlalchemy.orm.session.Session | sqlalchemy.engine.base.Connection" in launch
    assert "options: typing.Mapping[str, Any] | rhesis_pipeline.runs.options.RunOptions" in launch
    assert launch.endswith(") -> str")
    assert results == "def (run_id: str, *, organization_id: str | None =) -> list[dict[str, Any]]"
