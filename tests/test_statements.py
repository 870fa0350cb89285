"""Prepared statements (rhesis_pipeline.storage.statements) on a real database: rows read by
name as well as by position, and list parameters sent as array literals."""

import uuid

import pytest
from sqlalchemy import text

from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db, statements

EXECUTOR = "tests.support.targets:noop"


def test_a_prepared_statement_row_is_read_by_name_and_by_position(database_url):
    run_id = launch_test_run([{"id": "a"}, {"id": "b"}], executor=EXECUTOR)
    rows = statements.run_prepared("unfinished_runs_among", {"ids": [run_id, str(uuid.uuid4())]})
    assert len(rows) == 1
    (row,) = rows
    assert str(row.id) == str(row[0]) == str(row._mapping["id"]) == run_id
    assert row._fields == ("id",)
    assert isinstance(row, tuple) and tuple(row) == (row.id,)

    # A batch returns its last statement's rows, with that statement's names.
    other = launch_test_run([{"id": "c"}], executor=EXECUTOR, organization_id="org-1")
    (tenant,) = statements.run_prepared_batch(
        [("unfinished_runs_among", {"ids": [run_id]}), ("run_tenant", {"run_id": other})]
    )
    assert tenant._mapping == {"organization_id": "org-1", "user_id": None}
    assert (tenant.organization_id, tenant.user_id) == tuple(tenant)


def test_the_same_rows_inside_a_transaction(database_url):
    run_id = launch_test_run([{"id": "a"}], executor=EXECUTOR)
    with db.begin() as conn:
        (row,) = statements.execute_prepared(conn, "unfinished_runs_among", {"ids": [run_id]})
        assert str(row.id) == run_id
    # The session remembers what it prepared: a second call prepares nothing again.
    with db.begin() as conn:
        assert "unfinished_runs_among" in conn.connection.info["rhesis_prepared"]
        assert statements.execute_prepared(conn, "unfinished_runs_among", {"ids": []}) == []


def test_a_repeated_column_name_reads_its_first_value():
    row = statements._row_type(("n", "n", "m"))((1, 2, 3))
    assert (row.n, row.m) == (1, 3)
    assert row._mapping == {"n": 1, "m": 3}
    assert tuple(row) == (1, 2, 3)


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["plain", None, ""],
        ['a "quoted" word', "back\\slash", "comma, and {braces}", "NULL", " spaced "],
        ["ünïcödé", "tab\tand\nnewline"],
    ],
)
def test_a_list_parameter_reaches_postgres_unchanged(database_url, values):
    with db.connect() as conn:
        received = conn.execute(
            text("SELECT CAST(:a AS text[])"), {"a": statements._pg_array(values)}
        ).scalar()
    assert received == values


def test_booleans_and_times_in_a_list_parameter_keep_their_type(database_url):
    from datetime import datetime, timezone

    at = datetime(2026, 12, 6, 12, 30, 15, 250000, tzinfo=timezone.utc)
    with db.connect() as conn:
        flags = conn.execute(
            text("SELECT CAST(:a AS boolean[])"), {"a": statements._pg_array([True, False, None])}
        ).scalar()
        times = conn.execute(
            text("SELECT CAST(:a AS timestamptz[])"), {"a": statements._pg_array([at])}
        ).scalar()
    assert flags == [True, False, None]
    assert times == [at]
