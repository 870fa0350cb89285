"""Run ids as lists show them: every command and dashboard URL that takes a run id takes
a unique prefix of at least 8 hex digits, as git takes a commit's; an ambiguous one lists
the matches, a short or malformed one is one clear line (exit 2)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from rhesis_pipeline.cli import monitor, pipeline
from rhesis_pipeline.dashboard.app import create_app
from rhesis_pipeline.dashboard.state import DashboardConfig
from rhesis_pipeline.errors import RunNotFound
from rhesis_pipeline.runs import ids as run_ids
from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db

from .support.asgi import asgi_client

EXECUTOR = "tests.support.targets:echo"

# Three runs: two share their first 8 digits (and differ at the 9th), one is alone.
TWINS = ("7d87edb6-1a00-4000-8000-000000000001", "7d87edb6-2b00-4000-8000-000000000002")
SINGLE = "0c8a3c4e-0d7a-4c1e-9a43-2a4b1b2f5f00"


def run_with_id(run_id: str, *, name: str, org: str = "acme") -> str:
    """A run of 2 tests whose id is *run_id* (ids are random otherwise)."""
    made = launch_test_run(
        [{"id": "a"}, {"id": "b"}], executor=EXECUTOR, name=name, organization_id=org
    )
    with db.begin() as conn:
        conn.execute(
            text("UPDATE rhesis.test_runs SET id = :new WHERE id = :old"),
            {"new": run_id, "old": made},
        )
        conn.execute(
            text("UPDATE rhesis.test_results SET run_id = :new WHERE run_id = :old"),
            {"new": run_id, "old": made},
        )
    return run_id


@pytest.fixture
def three_runs(database_url):
    run_with_id(TWINS[0], name="twin-one")
    run_with_id(TWINS[1], name="twin-two", org="globex")
    run_with_id(SINGLE, name="single")


def invoke(tool, *args: str):
    return CliRunner().invoke(tool.main, list(args))


def one_error_line(result) -> str:
    """The one line saying what is wrong (besides the database announcement)."""
    lines = [ln for ln in result.output.splitlines() if ln.strip() and "using database" not in ln]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_resolve_takes_a_unique_prefix_and_refuses_the_rest(three_runs):
    assert run_ids.resolve("0c8a3c4e") == SINGLE
    assert run_ids.resolve("0C8A3C4E-0D7A") == SINGLE  # any case, hyphens as shown
    assert run_ids.resolve("7d87edb61") == TWINS[0]
    assert run_ids.resolve(SINGLE.upper()) == SINGLE
    with pytest.raises(run_ids.AmbiguousRunId) as ambiguous:
        run_ids.resolve("7d87edb6")
    assert ambiguous.value.matches == list(TWINS)
    assert str(ambiguous.value) == (
        f"run id '7d87edb6' is ambiguous: 2 runs start with it ({TWINS[0]}, {TWINS[1]}); "
        "give more digits"
    )
    with pytest.raises(RunNotFound, match=r"^no test run with id ffffffff$"):
        run_ids.resolve("ffffffff")
    for bad in ("7d87edb", "7d87edbz", "", "nope"):
        with pytest.raises(run_ids.InvalidRunId, match="is not a run id: give the run's UUID"):
            run_ids.parse(bad)


def test_a_tenant_resolves_among_its_own_runs_only(three_runs):
    # Row-level security: acme sees one twin, so the prefix is unique to it, and
    # another organization's run is not there at all.
    assert run_ids.resolve("7d87edb6", organization_id="acme") == TWINS[0]
    assert run_ids.resolve("7d87edb6", organization_id="globex") == TWINS[1]
    with pytest.raises(RunNotFound):
        run_ids.resolve("0c8a3c4e", organization_id="globex")


def test_every_command_takes_a_prefix(three_runs):
    shown = invoke(pipeline, "show", "0c8a3c4e", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["run_id"] == SINGLE

    inspected = invoke(monitor, "inspect", "0c8a3c4e", "--json")
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["run_id"] == SINGLE

    tenant = invoke(monitor, "inspect", "7d87edb6", "--org", "globex", "--json")
    assert tenant.exit_code == 0, tenant.output
    assert json.loads(tenant.stdout)["run_id"] == TWINS[1]

    revoked = invoke(monitor, "revoke", "7d87edb61", "0c8a3c4e", "--json")
    assert revoked.exit_code == 0, revoked.output
    assert [r["run_id"] for r in json.loads(revoked.stdout)["runs"]] == [TWINS[0], SINGLE]
    assert get_run(TWINS[0]).cancel_requested and get_run(SINGLE).cancel_requested

    rerun = invoke(pipeline, "rerun", "0c8a3c4e", "--all", "--json")
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["rerun_of"] == SINGLE


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        (pipeline, ("show",)),
        (pipeline, ("rerun",)),
        (monitor, ("inspect",)),
        (monitor, ("revoke",)),
    ],
)
def test_bad_prefixes_are_one_line_each(three_runs, tool, args):
    short = invoke(tool, *args, "7d87ed")
    assert short.exit_code == 2
    assert "'7d87ed' is not a run id: give the run's UUID or its first 8 or more hex digits" in (
        one_error_line(short)
    )
    not_hex = invoke(tool, *args, "7d87edbx")
    assert not_hex.exit_code == 2 and "'7d87edbx' is not a run id" in one_error_line(not_hex)

    ambiguous = invoke(tool, *args, "7d87edb6")
    assert ambiguous.exit_code == 2
    line = one_error_line(ambiguous)
    assert "'7d87edb6' is ambiguous: 2 runs start with it" in line
    assert TWINS[0] in line and TWINS[1] in line

    unknown = invoke(tool, *args, "ffffffff")
    assert unknown.exit_code == 2
    assert one_error_line(unknown).endswith("error: no test run with id ffffffff")
    assert not get_run(TWINS[0]).cancel_requested  # nothing was revoked


def test_dashboard_urls_take_a_prefix(three_runs):
    with asgi_client(create_app(DashboardConfig())) as http:
        page = http.get("/runs/0c8a3c4e")
        assert page.status_code == 200 and "single" in page.text and SINGLE in page.text
        assert http.get("/runs/0c8a3c4e/revoke").status_code == 200
        ambiguous = http.get("/runs/7d87edb6")
        assert ambiguous.status_code == 400
        assert "&#39;7d87edb6&#39; is ambiguous: 2 runs start with it" in ambiguous.text
        assert TWINS[0] in ambiguous.text and TWINS[1] in ambiguous.text
        assert http.get("/runs/7d87ed").status_code == 400
        assert http.get("/runs/ffffffff").status_code == 404
    with asgi_client(create_app(DashboardConfig(organization="globex"))) as tenant:
        assert "twin-two" in tenant.get("/runs/7d87edb6").text
        assert tenant.get("/runs/0c8a3c4e").status_code == 404
