"""rhesis-monitor as operators run it: real subprocesses, real worker processes, real
Postgres."""

import json
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from rhesis_pipeline.runs.read import get_run
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.storage import db

from .support import cli
from .support.runs import hook_calls, scalar, wait_finished
from .support.waiting import wait_until

EXECUTOR = "tests.support.targets:counted_sleep"
FAST = {"RHESIS_HEARTBEAT_INTERVAL_S": "0.5", "RHESIS_HEARTBEAT_TIMEOUT_S": "3"}


def monitor(database_url, *args, timeout=60):
    return cli.run("rhesis-monitor", *args, env={"DATABASE_URL": database_url}, timeout=timeout)


def executions() -> int:
    return scalar("SELECT count(*) FROM public.test_records WHERE key LIKE 'exec:%'")


def submit(n, *, sleep_s=0.0, name="nightly", options=None):
    tests = [{"id": f"t{i:03d}", "sleep_s": sleep_s} for i in range(n)]
    return launch_test_run(
        tests, executor=EXECUTOR, name=name, organization_id="acme", options=options
    )


def snapshot_rows():
    with db.connect() as conn:
        return (
            conn.execute(text("SELECT message_id, state::text FROM dramatiq.queue ORDER BY 1")).all(),
            conn.execute(text("SELECT run_id, test_id, status FROM rhesis.test_results ORDER BY 1, 2")).all(),
            conn.execute(text("SELECT id, status, done, cancel_requested FROM rhesis.test_runs ORDER BY 1")).all(),
        )  # fmt: skip


@pytest.mark.slow
def test_a_run_revoked_while_no_worker_runs_is_cancelled_once_and_none_of_its_tests_run(
    database_url, workers
):
    # Given: a run submitted while no worker is running.
    run_id = submit(20)

    # check --max-hours 0 finds it and exits 1.
    check = monitor(database_url, "check", "--max-hours", "0")
    assert check.returncode == 1, check.stderr
    assert run_id in check.stdout and "nightly" in check.stdout and "acme" in check.stdout
    check_json = json.loads(monitor(database_url, "check", "--max-hours", "0", "--json").stdout)
    assert [r["run_id"] for r in check_json["runs"]] == [run_id]

    # revoke --dry-run changes nothing.
    before = snapshot_rows()
    dry = monitor(database_url, "revoke", run_id, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would revoke run {run_id}" in dry.stdout and "dry run: nothing changed" in dry.stdout
    assert snapshot_rows() == before

    # revoke cancels it.
    revoke = monitor(database_url, "revoke", run_id, "--json")
    assert revoke.returncode == 0, revoke.stderr
    (outcome,) = json.loads(revoke.stdout)["runs"]
    assert outcome["action"] == "revoked" and outcome["removed_messages"] == 20

    # Then: a worker started afterwards runs the callback once and none of the tests.
    workers.start(processes=1, threads=4)
    run = wait_finished(run_id, timeout=30)
    assert run.status == "CANCELLED" and run.cancelled == 20 and run.collected_count == 1
    assert len(hook_calls(run_id)) == 1
    assert executions() == 0
    assert monitor(database_url, "check", "--max-hours", "0").returncode == 0


@pytest.mark.slow
def test_revoking_a_running_run_skips_its_remaining_members(database_url, workers):
    workers.start(processes=1, threads=2)
    run_id = submit(40, sleep_s=0.5)
    wait_until(lambda: get_run(run_id).done >= 4, what="run under way")

    revoke = monitor(database_url, "revoke", run_id, "--json")
    assert revoke.returncode == 0, revoke.stderr
    executed_at_revoke = executions()
    (outcome,) = json.loads(revoke.stdout)["runs"]
    assert outcome["action"] == "revoked" and outcome["cancelled_tests"] > 0

    run = wait_finished(run_id, timeout=30)
    assert run.status == "CANCELLED" and run.collected_count == 1
    # The tests without an outcome when it was revoked are cancelled; the others passed.
    assert run.cancelled == outcome["cancelled_tests"]
    assert run.passed >= 4 and run.passed + run.cancelled == 40
    # Members already executing when it was revoked finish; nothing else starts: once no
    # member message is left waiting or held, at most the two threads' members in
    # flight at the revocation have started since.
    wait_until(
        lambda: (
            scalar(
                "SELECT count(*) FROM dramatiq.queue q JOIN rhesis.test_results r "
                "ON r.message_id = q.message_id WHERE r.run_id = :r "
                "AND q.state IN ('queued', 'consumed')",
                r=run_id,
            )
            == 0
        ),
        what="no member message waiting or held",
    )
    wait_until(lambda: scalar("SELECT count(*) FROM rhesis.claims") == 0, what="claims released")
    assert executions() <= executed_at_revoke + 2
    # Those in flight at the revocation are cancelled: executing (two threads), or
    # finished with their outcome handed to the outcome writer and not yet committed (the
    # fast path; at most the prefetch of four).
    assert executions() <= run.passed + 2 + 4
    assert len(hook_calls(run_id)) == 1


@pytest.mark.slow
def test_revoking_interrupts_the_members_executing_the_run(database_url, workers):
    # Given: two members executing 90-second tests on a worker with a fast heartbeat.
    worker = workers.start(processes=1, threads=2, env=FAST)
    run_id = submit(6, sleep_s=90, options={"time_limit_ms": 100_000, "max_retries": 0})
    wait_until(lambda: executions() == 2, what="two members executing")

    # When: the run is revoked.
    assert monitor(database_url, "revoke", run_id).returncode == 0

    # Then: their threads are free within a few heartbeats, not after 90 s, and nothing
    # is retried or run again.
    wait_until(
        lambda: scalar("SELECT count(*) FROM rhesis.claims") == 0, timeout=30, what="claims gone"
    )
    run = wait_finished(run_id, timeout=30)
    assert run.status == "CANCELLED" and run.cancelled == 6 and run.collected_count == 1
    assert executions() == 2
    assert "interrupted: the run was revoked" in worker.log()
    assert scalar("SELECT count(*) FROM dramatiq.queue WHERE state = 'queued'") == 0


@pytest.mark.slow
def test_a_queue_no_live_worker_consumes_is_named_by_status_health_and_fix(database_url, workers):
    # Given: a live worker that consumes the callback and maintenance queues only.
    workers.start(processes=1, threads=2, queues=("rhesis-callbacks", "rhesis-maintenance"))
    submit(5)
    advice = "start a worker with -Q rhesis-tests or fix the queue name"

    status = monitor(database_url, "status")
    assert status.returncode == 0, status.stderr
    assert "queue rhesis-tests has 5 waiting messages" in status.stdout and advice in status.stdout
    status_json = json.loads(monitor(database_url, "status", "--json").stdout)
    assert status_json["workers"]["live"] == 1
    tests_queue = next(q for q in status_json["queues"] if q["queue"] == "rhesis-tests")
    assert (tests_queue["queued"], tests_queue["consumers"]) == (5, 0)

    health = monitor(database_url, "health", "--json")
    assert health.returncode == 1
    (problem,) = json.loads(health.stdout)["problems"]
    assert (problem["code"], problem["subject"]) == ("queue_without_consumer", "rhesis-tests")

    fix = monitor(database_url, "fix", "--yes")
    assert fix.returncode == 1
    assert advice in fix.stdout.split("RECOMMENDATIONS", 1)[1]


class Interactive:
    """A subprocess whose output is read as it comes (prompts have no newline)."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen(
            [cli.script(args[0]), *args[1:]],
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=0,
            # A shell without job control starts background commands with SIGINT ignored,
            # and children inherit that: give the CLI the default, as a terminal would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while chunk := self.proc.stdout.read(1):
            self.output += chunk

    def wait_for(self, fragment, count=1):
        wait_until(lambda: self.output.count(fragment) >= count, timeout=30, what=repr(fragment))

    def answer(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdin.close()
        self._reader.join(10)
        self.proc.stdout.close()


def backdate(run_id, minutes):
    with db.begin() as conn:
        conn.execute(
            text("UPDATE rhesis.test_runs SET created_at = :t WHERE id = :r"),
            {"t": datetime.now(timezone.utc) - timedelta(minutes=minutes), "r": run_id},
        )


def test_ctrl_c_during_interactive_fix_exits_130_and_leaves_nothing_half_done(database_url):
    # Given: two runs stuck for about 45 minutes: fix asks about each.
    first, second = submit(3, name="first"), submit(3, name="second")
    backdate(first, 50)
    backdate(second, 45)
    untouched_before = [r for r in snapshot_rows()[1] if str(r.run_id) == second]

    session = Interactive(["rhesis-monitor", "fix"], {"DATABASE_URL": database_url})
    try:
        session.wait_for(f"Revoke run {first}")
        session.answer("y")
        session.wait_for(f"Revoke run {second}")
        # When: the operator presses Ctrl-C at the second question.
        session.proc.send_signal(signal.SIGINT)
        assert session.proc.wait(30) == 130
    finally:
        session.close()
    assert "interrupted" in session.output and "Traceback" not in session.output

    # Then: the first run is revoked whole, the second untouched.
    assert f"revoked run {first}" in session.output
    assert get_run(first).cancelled == 3
    assert scalar("SELECT cancel_requested FROM rhesis.test_runs WHERE id = :r", r=first)
    assert (
        scalar(
            "SELECT count(*) FROM dramatiq.queue WHERE message->>'actor_name' = 'collect_results'"
        )
        == 1
    )
    assert [r for r in snapshot_rows()[1] if str(r.run_id) == second] == untouched_before
    assert not scalar("SELECT cancel_requested FROM rhesis.test_runs WHERE id = :r", r=second)
    assert (
        scalar(
            "SELECT count(*) FROM dramatiq.queue q JOIN rhesis.test_results r "
            "ON r.message_id = q.message_id WHERE r.run_id = :r AND q.state = 'queued'",
            r=second,
        )
        == 3
    )


@pytest.mark.slow
def test_workers_shows_what_a_live_worker_runs_then_it_is_dead(database_url, workers):
    worker = workers.start(processes=1, threads=2, env=FAST)
    run_id = submit(4, sleep_s=30)
    wait_until(lambda: scalar("SELECT count(*) FROM rhesis.claims") >= 2, what="members claimed")

    listing = monitor(database_url, "workers", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert (data["live"], data["dead"]) == (1, 0)
    (live,) = data["workers"]
    assert live["alive"] and live["pid"] > 0 and "rhesis-tests" in live["queues"]
    assert {r["run_id"] for r in live["running"]} == {run_id}
    human = monitor(database_url, "workers")
    assert (
        "live" in human.stdout and run_id in human.stdout and "execute_single_test" in human.stdout
    )

    os.killpg(worker.pid, signal.SIGKILL)
    worker.proc.wait(10)
    # Its lock went with its connection at once; until the lock grace (three heartbeat
    # intervals) has passed it may be a worker reconnecting, then it is dead.
    env = {"DATABASE_URL": database_url, **FAST}
    gone = json.loads(cli.run("rhesis-monitor", "workers", "--json", env=env).stdout)
    assert gone["workers"][0]["lock_held"] is False
    dead = wait_until(
        lambda: (
            (d := json.loads(cli.run("rhesis-monitor", "workers", "--json", env=env).stdout))[
                "dead"
            ]
            == 1
            and d
        ),
        timeout=20,
        what="the killed worker dead",
    )
    assert (dead["live"], dead["dead"]) == (0, 1)
    assert monitor(database_url, "revoke", run_id).returncode == 0


@pytest.mark.slow
def test_serve_health_answers_503_then_200_and_stops_on_sigterm(database_url, workers):
    with cli.serve_health(database_url) as (proc, url):

        def get(path_url):
            try:
                with urllib.request.urlopen(path_url, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        code, body = get(url)
        assert code == 503 and body["healthy"] is False
        assert [p["code"] for p in body["problems"]] == ["no_live_worker"]
        assert get(url.replace("/healthz", "/nope"))[0] == 404

        workers.start(processes=1, threads=2)
        code, body = wait_until(lambda: (r := get(url))[0] == 200 and r, timeout=20, what="200")
        assert body["healthy"] is True and body["live_workers"] == 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_unreachable_database_is_one_line_and_health_says_unhealthy():
    url = "postgresql://nobody:s3cret@127.0.0.1:1/none"
    health = cli.run("rhesis-monitor", "health", env={"DATABASE_URL": url})
    assert health.returncode == 1
    assert "unhealthy" in health.stdout and "cannot use database" in health.stdout
    assert "s3cret" not in health.stdout + health.stderr
    for command in (["status"], ["check", "--max-hours", "1"], ["workers", "--json"]):
        out = cli.run("rhesis-monitor", *command, env={"DATABASE_URL": url})
        assert out.returncode == 1, command
        errors = [ln for ln in out.stderr.splitlines() if "error:" in ln]
        assert len(errors) == 1 and "cannot use database" in errors[0]
        assert "Traceback" not in out.stderr


def test_clean_as_a_subprocess_refuses_without_force(database_url):
    submit(2)
    before = snapshot_rows()
    out = monitor(database_url, "clean", "--queue", "rhesis-tests")
    assert out.returncode == 1
    assert "would delete 2 waiting messages from queue rhesis-tests" in out.stdout
    assert "pass --force" in out.stderr
    assert snapshot_rows() == before
    forced = monitor(database_url, "clean", "--queue", "rhesis-tests", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["deleted"] == 2


@pytest.mark.slow
def test_help_documents_the_exit_codes():
    out = cli.run("rhesis-monitor", "--help")
    assert out.returncode == 0
    for command in ("status", "check", "revoke", "inspect", "clean", "fix", "workers", "health",
                    "serve-health", "sweep"):  # fmt: skip
        assert command in out.stdout
        sub = cli.run("rhesis-monitor", command, "--help")
        assert sub.returncode == 0 and "130 interrupted" in sub.stdout, command
    assert cli.run("rhesis-monitor", "nonsense").returncode == 2


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["check", "--max-hours", "0"],
        ["inspect", "{run}"],
        ["inspect", "{run}", "--verbose"],
        ["workers"],
        ["health"],
        ["revoke", "{run}", "--dry-run"],
        ["clean", "--dry-run"],
        ["fix", "--dry-run"],
        ["sweep", "--dry-run"],
    ],
    ids=lambda c: " ".join(c),
)
@pytest.mark.slow
def test_every_command_as_a_subprocess_text_and_json(database_url, command):
    # Given: one run waiting, no worker: check, health and fix find problems (exit 1).
    run_id = submit(3)
    args = [a.replace("{run}", run_id) for a in command]
    expected = 1 if command[0] in ("check", "health", "fix") else 0

    human = monitor(database_url, *args)
    assert human.returncode == expected, human.stderr
    assert human.stdout.strip() and "Traceback" not in human.stderr
    if command[0] not in ("health", "sweep", "revoke", "clean", "fix"):
        assert run_id in human.stdout or command[0] == "workers"

    as_json = monitor(database_url, *args, "--json")
    assert as_json.returncode == expected, as_json.stderr
    assert isinstance(json.loads(as_json.stdout), dict)


def test_inspect_as_a_subprocess_exit_codes(database_url):
    run_id = submit(2)
    data = json.loads(monitor(database_url, "inspect", run_id, "--json").stdout)
    assert data["run_id"] == run_id and data["total"] == 2 and "tests" not in data
    missing = monitor(database_url, "inspect", "0c8a3c4e-0d7a-4c1e-9a43-2a4b1b2f5f00")
    assert missing.returncode == 2 and "no test run with id" in missing.stderr
    malformed = monitor(database_url, "inspect", "nope")
    assert malformed.returncode == 2 and "'nope' is not a run id" in malformed.stderr


def test_revoke_by_age_asks_on_a_terminal_and_revokes_on_yes(database_url):
    import pty

    run_id = submit(2)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [cli.script("rhesis-monitor"), "revoke", "--max-hours", "0"],
        env={**os.environ, "DATABASE_URL": database_url},
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.close(slave)
    try:
        os.write(master, b"y\n")  # the terminal buffers the answer until it is read
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 0, out
    assert "1 run stuck for 0h or more" in out and "Revoke it? [y/N]" in out
    assert f"revoked run {run_id}" in out
    assert get_run(run_id).cancelled == 2
