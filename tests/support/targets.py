"""Python executor targets used by tests (imported by test workers as 'tests.support.targets')."""

from __future__ import annotations

import os
import time

from sqlalchemy import text

from rhesis_pipeline.storage import db
from rhesis_pipeline.storage.tenant_context import current_tenant


def noop(test):
    return True


def echo(test):
    """Passes, with the prompt as output; fails when the test says expect_pass: false."""
    return {"passed": test.get("expect_pass", True), "output": test.get("prompt")}


def boom_if_asked(test):
    """Raises on every attempt when the test has "fail": true."""
    if test.get("fail"):
        raise RuntimeError(f"boom in {test['id']}")
    return True


def always_raise(test):
    raise ValueError(f"cannot run {test['id']}")


def sleep(test):
    """Sleeps sleep_s seconds in short steps, so that a time limit can interrupt it (an
    asynchronous exception reaches a thread only between Python bytecodes)."""
    deadline = time.monotonic() + float(test.get("sleep_s", 1))
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return {"output": os.getpid()}


def tenant_probe(test):
    """Reports the tenant the actor sees and what its database session sees."""
    tenant = current_tenant()
    with db.actor_transaction() as conn:
        org, user = conn.execute(
            text(
                "SELECT current_setting('app.current_organization', true), "
                "current_setting('app.current_user', true)"
            )
        ).one()
    return {
        "output": {
            "accessor": None if tenant is None else [tenant.organization_id, tenant.user_id],
            "session": [org, user],
        }
    }


def counted_sleep(test):
    """Records one row per execution (to detect duplicates), then sleeps sleep_s."""
    import uuid

    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO public.test_records (key, payload, pid) VALUES (:k, '{}', :pid)"),
            {"k": f"exec:{test['id']}:{uuid.uuid4()}", "pid": os.getpid()},
        )
    return sleep(test)


def _log_line(env: str, line: str) -> None:
    """Append *line* to the file named by environment variable *env* (if set). One write
    of a short line with O_APPEND: lines of concurrent processes never interleave."""
    path = os.environ.get(env)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def logged(test):
    """Logs its execution to $RHESIS_TEST_EXEC_LOG (survives any database outage), then
    sleeps sleep_s (default 0); with "cut": true it first ends every other connection to
    its database (the worker's own included: pool, heartbeat, consumers); with
    "fail": true it raises after that."""
    _log_line("RHESIS_TEST_EXEC_LOG", str(test["id"]))
    if test.get("cut"):
        from .faults import cut_connections

        cut_connections(os.environ["DATABASE_URL"])
    if test.get("fail"):
        raise RuntimeError(f"failed on purpose after cutting: {test['id']}")
    if test.get("sleep_s"):
        time.sleep(float(test["sleep_s"]))
    return True


def hook_to_file(summary) -> None:
    """Run-finished hook: logs the run id to $RHESIS_TEST_HOOK_LOG (callbacks counted
    without the database)."""
    _log_line("RHESIS_TEST_HOOK_LOG", f"{summary.id} {summary.status}")


#: Outputs the database cannot store as they are (issue: one bad test never hurts another).
POISON = {
    "nul-key": {"passed": True, "output": {"k\u0000": "v"}},
    "nul-value": {"passed": True, "output": "a\u0000b"},
    "nan": {"passed": True, "output": {"score": float("nan")}},
    "infinity": {"passed": True, "output": [1.0, float("inf")]},
    "surrogate": {"passed": True, "output": {"text": "x\ud800y"}},
    "deep": {
        "passed": True,
        "output": __import__("functools").reduce(lambda a, _: [a], range(500), 0),
    },
}


def poison_output(test):
    """Returns the unstorable output named by test["poison"], else a normal one."""
    kind = test.get("poison")
    return POISON[kind] if kind else {"passed": True, "output": "fine"}


def crash_if_asked(test):
    """Kills its worker process (os._exit) when the test has "crash": true; else passes."""
    if test.get("crash"):
        os._exit(1)
    time.sleep(float(test.get("sleep_s", 0.02)))
    return True


def returns(test):
    """Returns test["value"] as it is (None, False, {"passed": "no"}, ...)."""
    return test.get("value")


def from_blob(test):
    """Returns the value pickled (base64) in test["blob"]: any Python value, including
    what a suite's JSON cannot carry (NaN, NUL, lone surrogates) — fuzz tests only."""
    import base64
    import pickle

    return pickle.loads(base64.b64decode(test["blob"]))


async def async_crash_if_asked(test):
    """An ``async def`` target (it runs on the worker's event loop): kills its worker
    process (os._exit) when the test has "crash": true; else waits test["sleep_s"]."""
    import asyncio

    if test.get("crash"):
        os._exit(1)
    await asyncio.sleep(float(test.get("sleep_s", 0.02)))
    return True


def timed(test):
    """A thread target for rolling updates: logs "id pid" to $RHESIS_TEST_EXEC_LOG (one line
    per execution: re-executions are visible without the database), sleeps sleep_s, and
    passes unless the test has "expect_pass": false."""
    _log_line("RHESIS_TEST_EXEC_LOG", f"{test['id']} {os.getpid()}")
    time.sleep(float(test.get("sleep_s", 0.05)))
    return {"passed": test.get("expect_pass", True)}


async def timed_async(test):
    """:func:`timed` as an ``async def`` target: it runs on the worker's event loop."""
    import asyncio

    _log_line("RHESIS_TEST_EXEC_LOG", f"{test['id']} {os.getpid()}")
    await asyncio.sleep(float(test.get("sleep_s", 0.05)))
    return {"passed": test.get("expect_pass", True)}
