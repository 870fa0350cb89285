"""rhesis-monitor through click's CliRunner and the library it calls, on a real Postgres
(no worker processes here; see test_monitor_processes.py for those)."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from rhesis_pipeline.cli import monitor
from rhesis_pipeline.monitor import (
    Status,
    apply_fix,
    check_health,
    clean_queues,
    find_stuck_runs,
    inspect_run,
    plan_fix,
    recommendations_after,
    revoke_runs,
    status,
)
from rhesis_pipeline.monitor.diagnosis import ORPHAN_GRACE_S, Snapshot, diagnose
from rhesis_pipeline.monitor.queues import QueueStats
from rhesis_pipeline.monitor.stuck import RunListing
from rhesis_pipeline.monitor.workers import Claim, WorkerInfo, WorkerListing
from rhesis_pipeline.runs.complete import finish_run
from rhesis_pipeline.runs.members import record_outcome
from rhesis_pipeline.runs.messages import callback_message_id
from rhesis_pipeline.runs.read import get_results, get_run
from rhesis_pipeline.runs.record import Run
from rhesis_pipeline.runs.report import format_seconds
from rhesis_pipeline.runs.submit import launch_test_run
from rhesis_pipeline.settings import libpq_url
from rhesis_pipeline.storage import db, engine

from .support.runs import scalar
from .support.waiting import wait_until

EXECUTOR = "tests.support.targets:counted_sleep"


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(monitor.main, list(args), input=input)


def submit(n=3, name="nightly", org="acme", user="ops"):
    tests = [{"id": f"t{i}", "sleep_s": 0} for i in range(n)]
    return launch_test_run(tests, executor=EXECUTOR, name=name, organization_id=org, user_id=user)


def backdate(run_id, *, created_h, started_h=None, progress_h=None):
    """Move a run's timestamps into the past (hours ago), as if it had been stuck."""
    now = datetime.now(timezone.utc)

    def ago(hours):
        return None if hours is None else now - timedelta(hours=hours)

    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE rhesis.test_runs SET created_at = :c, started_at = :s, "
                "last_progress_at = :p, status = CASE WHEN CAST(:s AS timestamptz) IS NULL "
                "THEN status ELSE 'IN_PROGRESS' END WHERE id = :r"
            ),
            {"c": ago(created_h), "s": ago(started_h), "p": ago(progress_h), "r": run_id},
        )


def state_of_everything():
    """Every row revocation or cleaning could touch, to prove a dry run changed nothing."""
    with db.connect() as conn:
        return {
            "queue": conn.execute(
                text("SELECT message_id, queue_name, state::text FROM dramatiq.queue ORDER BY 1")
            ).all(),
            "results": conn.execute(
                text("SELECT run_id, test_id, status FROM rhesis.test_results ORDER BY 1, 2")
            ).all(),
            "runs": conn.execute(
                text("SELECT id, status, done, cancel_requested FROM rhesis.test_runs ORDER BY 1")
            ).all(),
        }


def callbacks_queued(run_id):
    return scalar(
        "SELECT count(*) FROM dramatiq.queue WHERE message->>'actor_name' = 'collect_results' "
        "AND message->'args'->>0 = :r",
        r=run_id,
    )


# -- pure logic ------------------------------------------------------------------------


def test_ages_read_like_3h12m():
    assert [format_seconds(s) for s in (5, 65, 3 * 3600 + 12 * 60 + 9, 50 * 3600, None)] == [
        "5s",
        "1m05s",
        "3h12m",
        "2d02h",
        "-",
    ]


def _worker(alive, *, queues=("rhesis-tests",), heartbeat_age_s=1.0, claims=()):
    now = datetime.now(timezone.utc)
    return WorkerInfo(
        worker_id=str(uuid.uuid4()),
        host="h",
        pid=1,
        queues=list(queues),
        alive=alive,
        started_at=now,
        heartbeat_at=now,
        heartbeat_age_s=heartbeat_age_s,
        stopped_at=None,
        claims=list(claims),
    )


def _claim(age_s=1.0):
    return Claim(
        str(uuid.uuid4()), "rhesis-tests", "execute_single_test", None, None, None, None, age_s
    )


def _snapshot(workers, queues=(), unowned=(), stuck=0):
    return Snapshot(
        workers=WorkerListing(list(workers), list(unowned)),
        queues=list(queues),
        runs=RunListing([], stuck, stuck),
        max_hours=2,
        heartbeat_timeout_s=30,
    )


def test_diagnosis_names_the_queue_nobody_consumes_and_the_delay_queue_by_its_base():
    listing = WorkerListing([_worker(True, queues=("rhesis-callbacks",))], [])
    queues = [
        QueueStats("rhesis-tests", queued=120, oldest_queued_age_s=600),
        QueueStats("rhesis-tests.DQ", queued=3),
        QueueStats("rhesis-callbacks", queued=2),
    ]
    for q in queues:
        q.consumers = len(listing.consumers(q.queue))
    found = diagnose(_snapshot(listing.workers, queues))
    assert [(f.code, f.subject) for f in found] == [
        ("queue_without_consumer", "rhesis-tests"),
        ("queue_without_consumer", "rhesis-tests.DQ"),
    ]
    assert found[0].message == (
        "queue rhesis-tests has 120 waiting messages (oldest 10m00s) and no live worker consumes it"
    )
    assert found[0].recommendation == "start a worker with -Q rhesis-tests or fix the queue name"
    assert found[1].recommendation == "start a worker with -Q rhesis-tests or fix the queue name"


def test_diagnosis_tells_a_fresh_death_from_an_orphan_backlog():
    fresh = _worker(False, heartbeat_age_s=31, claims=[_claim()])
    old = _worker(False, heartbeat_age_s=30 + ORPHAN_GRACE_S + 1, claims=[_claim(), _claim()])
    found = diagnose(_snapshot([_worker(True), fresh, old], unowned=[_claim(ORPHAN_GRACE_S + 5)]))
    codes = [(f.code, f.severity) for f in found]
    assert codes == [
        ("orphan_backlog", "problem"),  # the old death: 2 messages nobody rescued
        ("orphan_backlog", "problem"),  # consumed without any claim
        ("dead_worker_holding_messages", "warning"),
    ]
    assert "still holds 2 messages" in found[0].message


def test_diagnosis_of_an_idle_healthy_system_is_empty_and_of_no_worker_is_a_problem():
    assert diagnose(_snapshot([_worker(True)])) == []
    (finding,) = diagnose(_snapshot([]))
    assert (finding.code, finding.severity) == ("no_live_worker", "problem")


def test_diagnosis_warns_when_the_server_runs_without_autovacuum():
    snapshot = _snapshot([_worker(True)])
    snapshot.autovacuum = False
    (finding,) = diagnose(snapshot)
    assert (finding.code, finding.severity) == ("autovacuum_off", "warning")
    assert "ALTER SYSTEM SET autovacuum = on" in finding.recommendation
    snapshot.autovacuum = True
    assert diagnose(snapshot) == []


@pytest.mark.slow
def test_the_snapshot_reads_autovacuum_from_the_server_both_ways(owned_server, owned_database_url):
    """The finding follows the server's setting: this test owns the server and sets it."""
    from rhesis_pipeline.monitor.status import take_snapshot

    def set_autovacuum(value: str) -> None:
        conn = psycopg2.connect(libpq_url(owned_server.admin_url))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"ALTER SYSTEM SET autovacuum = {value}")
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()
        # A reload reaches new sessions at once; dispose of the pooled ones.
        engine.dispose()

    for value, expected in (("off", False), ("on", True), ("off", False)):
        set_autovacuum(value)
        # A reload reaches new sessions once the postmaster has read the file again.
        snapshot = wait_until(
            lambda expected=expected: (s := take_snapshot()).autovacuum is expected and s,
            timeout=10,
            what=f"autovacuum = {value} seen",
        )
        codes = [f.code for f in diagnose(snapshot)]
        assert ("autovacuum_off" in codes) is (not expected), codes
        warnings = [f.code for f in check_health().warnings]
        assert ("autovacuum_off" in warnings) is (not expected), warnings


def server_autovacuum() -> bool:
    """Whether the session's server runs autovacuum (its setting is not the tests' to
    change: findings that depend on it are asserted both ways on an owned server)."""
    with db.connect() as conn:
        return conn.execute(text("SHOW autovacuum")).scalar() == "on"


# -- check -------------------------------------------------------------------------------


def test_check_finds_a_run_submitted_with_no_worker_at_threshold_zero(database_url):
    run_id = submit()
    result = invoke("check", "--max-hours", "0")
    assert result.exit_code == 1, result.output
    assert run_id in result.output and "nightly" in result.output and "acme/ops" in result.output
    assert "queued for" in result.output

    fresh = invoke("check", "--max-hours", "1")
    assert fresh.exit_code == 0, fresh.output
    assert "no stuck runs (threshold 1h)" in fresh.output


def test_check_counts_long_runs_and_runs_without_progress_and_not_healthy_ones(database_url):
    # Given: one run queued 3h, one in progress 5h (progressing), one in progress 30 min
    # but silent for 3h? impossible; one in progress 30 min with progress 1 min ago.
    queued = submit(name="queued-3h")
    backdate(queued, created_h=3)
    long = submit(name="long-5h")
    backdate(long, created_h=5, started_h=5, progress_h=0.01)
    silent = submit(name="silent")
    backdate(silent, created_h=4, started_h=3.5, progress_h=3)
    healthy = submit(name="healthy")
    backdate(healthy, created_h=0.5, started_h=0.5, progress_h=0.02)

    result = invoke("check", "--max-hours", "2", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["stuck"] == 3 and data["max_hours"] == 2
    found = {r["run_id"]: r for r in data["runs"]}
    assert set(found) == {queued, long, silent}
    assert found[queued]["reason"].startswith("queued for 3h0")
    assert found[silent]["reason"].startswith("in progress for 3h30m, last progress 3h0")
    assert set(found[long]) >= {
        "run_id", "name", "status", "organization_id", "user_id", "age_s", "total", "done",
        "percent", "last_progress_at", "idle_s", "reason",
    }  # fmt: skip
    # Injected time: the same runs seen from 10 hours later are all stuck.
    later = datetime.now(timezone.utc) + timedelta(hours=10)
    assert len(find_stuck_runs(2, now=later)) == 4


def test_check_with_nothing_stuck_exits_zero_with_json(database_url):
    result = invoke("check", "--max-hours", "0", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"max_hours": 0.0, "stuck": 0, "runs": []}


def test_check_refuses_a_negative_threshold(database_url):
    result = invoke("check", "--max-hours", "-1")
    assert result.exit_code == 2 and "-1" in result.output


# -- revoke ------------------------------------------------------------------------------


def test_revoke_dry_run_changes_nothing(database_url):
    run_id = submit(5)
    before = state_of_everything()
    result = invoke("revoke", run_id, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    (outcome,) = json.loads(result.stdout)["runs"]
    assert outcome["action"] == "would_revoke"
    assert (outcome["removed_messages"], outcome["cancelled_tests"]) == (5, 5)
    assert state_of_everything() == before


def test_revoke_removes_queued_members_cancels_tests_and_enqueues_one_callback(database_url):
    run_id = submit(5)
    other = submit(2, name="untouched")
    # One test already done (stored without its ack: its message still waits).
    record_outcome(run_id, "t0", status="passed")

    result = invoke("revoke", run_id)
    assert result.exit_code == 0, result.output
    assert f"revoked run {run_id} (nightly): 5 waiting messages removed, 4 tests cancelled" in (
        result.output
    )
    statuses = {r["test_id"]: r["status"] for r in get_results(run_id)}
    assert statuses == {"t0": "passed", "t1": "cancelled", "t2": "cancelled",
                        "t3": "cancelled", "t4": "cancelled"}  # fmt: skip
    member_rows = scalar(
        "SELECT count(*) FROM dramatiq.queue q JOIN rhesis.test_results r "
        "ON r.message_id = q.message_id WHERE r.run_id = :r AND q.state = 'queued'",
        r=run_id,
    )
    assert member_rows == 0
    assert callbacks_queued(run_id) == 1
    assert get_run(run_id).done == 5
    assert scalar("SELECT cancel_requested FROM rhesis.test_runs WHERE id = :r", r=run_id)
    # The callback, as a worker runs it: CANCELLED.
    summary = finish_run(run_id)
    assert summary is not None and summary.status == "CANCELLED"
    assert (summary.passed, summary.cancelled) == (1, 4)
    # The other run is untouched; revoking again changes nothing.
    assert get_run(other).done == 0 and callbacks_queued(other) == 0
    again = invoke("revoke", run_id, "--json")
    assert json.loads(again.stdout)["runs"][0]["action"] == "already_final"
    assert callbacks_queued(run_id) == 1


def test_revoking_a_run_whose_tests_all_have_outcomes_leaves_it_to_its_callback(database_url):
    run_id = submit(1)
    record_outcome(run_id, "t0", status="passed")
    (outcome,) = revoke_runs([run_id])
    assert outcome.action == "finishing"
    assert not scalar("SELECT cancel_requested FROM rhesis.test_runs WHERE id = :r", r=run_id)
    assert finish_run(run_id).status == "COMPLETED"


def test_revoke_by_age_asks_and_does_nothing_when_it_cannot_ask(database_url):
    run_id = submit(2)
    before = state_of_everything()
    refused = invoke("revoke", "--max-hours", "0")  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 1
    assert "pass --yes" in refused.output and run_id in refused.output
    assert state_of_everything() == before

    done = invoke("revoke", "--max-hours", "0", "--yes", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["revoked"] == 1 and data["dry_run"] is False
    assert data["runs"][0]["run_id"] == run_id and data["runs"][0]["callback_enqueued"]


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        ((), 2, "give RUN_IDs or --max-hours"),
        (("--max-hours", "1", "0c8a3c4e-0d7a-4c1e-9a43-2a4b1b2f5f00"), 2, "one of the two"),
        (("not-a-uuid",), 2, "'not-a-uuid' is not a run id"),
        (("0c8a3c4e-0d7a-4c1e-9a43-2a4b1b2f5f00",), 1, "no such run"),
    ],
)
def test_revoke_usage_errors_and_unknown_runs(database_url, args, code, fragment):
    result = invoke("revoke", *args)
    assert result.exit_code == code, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


# -- inspect -----------------------------------------------------------------------------


def test_inspect_shows_counts_timing_and_messages_and_every_test_when_verbose(database_url):
    run_id = submit(3)
    record_outcome(run_id, "t1", status="failed", worker="h:1", duration_ms=12.5)
    result = invoke("inspect", run_id)
    assert result.exit_code == 0, result.output
    assert f"run {run_id} (nightly): IN_PROGRESS" in result.output
    assert "1/3 (33%): 0 passed, 1 failed" in result.output
    assert "rhesis-tests  execute_single_test  queued  3" in result.output
    assert "TESTS" not in result.output

    verbose = invoke("inspect", run_id, "--verbose", "--json")
    data = json.loads(verbose.stdout)
    assert data["run_id"] == run_id and data["done"] == 1 and data["callbacks_run"] == 0
    assert data["messages"] == [
        {"queue": "rhesis-tests", "actor": "execute_single_test", "state": "queued", "messages": 3}
    ]
    tests = {t["test_id"]: t for t in data["tests"]}
    assert tests["t1"]["status"] == "failed" and tests["t1"]["worker"] == "h:1"
    assert tests["t1"]["duration_ms"] == 12.5
    assert tests["t0"]["status"] == "queued" and tests["t0"]["message_state"] == "queued"
    assert inspect_run(run_id).tests is None


def test_inspect_unknown_and_malformed_runs(database_url):
    unknown = invoke("inspect", str(uuid.uuid4()))
    assert unknown.exit_code == 2 and "no test run with id" in unknown.output
    malformed = invoke("inspect", "42")
    assert malformed.exit_code == 2 and "'42' is not a run id" in malformed.output


# -- clean -------------------------------------------------------------------------------


def enqueue_foreign(queue="reports", n=2):
    """Messages of an actor rhesis does not know, as another app on the database would."""
    with db.begin() as conn:
        for _ in range(n):
            message_id = str(uuid.uuid4())
            conn.execute(
                text(
                    "INSERT INTO dramatiq.queue (queue_name, message_id, state, message) "
                    "VALUES (:q, :m, 'queued', CAST(:msg AS jsonb))"
                ),
                {
                    "q": queue,
                    "m": message_id,
                    "msg": json.dumps(
                        {
                            "queue_name": queue,
                            "actor_name": "make_report",
                            "args": [],
                            "kwargs": {},
                            "options": {},
                            "message_id": message_id,
                            "message_timestamp": 0,
                        }
                    ),
                },
            )


def test_clean_without_force_deletes_nothing_and_exits_1(database_url):
    submit(3)
    enqueue_foreign()
    before = state_of_everything()
    result = invoke("clean")
    assert result.exit_code == 1
    assert "would delete 5 waiting messages from every queue" in result.output
    assert "nothing deleted: pass --force" in result.output
    assert state_of_everything() == before
    dry = invoke("clean", "--force", "--dry-run", "--json")
    assert dry.exit_code == 0
    assert json.loads(dry.stdout)["deleted"] == 5
    assert state_of_everything() == before


def test_clean_force_on_one_queue_cancels_the_runs_it_empties_and_keeps_callbacks(database_url):
    # Given: a run with waiting members, a finished-but-uncollected run (callback queued),
    # and another application's messages in another queue.
    victim = submit(4)
    finishing = submit(1, name="finishing")
    record_outcome(finishing, "t0", status="passed")
    with db.begin() as conn:  # its member's message done, as its worker would leave it
        conn.execute(
            text(
                "UPDATE dramatiq.queue SET state = 'done' WHERE message_id = "
                "(SELECT message_id FROM rhesis.test_results WHERE run_id = :r)"
            ),
            {"r": finishing},
        )
    enqueue_foreign("reports", 2)

    result = invoke("clean", "--force", "--queue", "rhesis-tests", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["deleted"] == 4 and data["cancelled_runs"] == [victim]
    assert data["messages"] == [
        {"queue": "rhesis-tests", "actor": "execute_single_test", "messages": 4}
    ]
    # The victim ends CANCELLED through its callback, never left IN_PROGRESS.
    assert get_run(victim).done == 4 and callbacks_queued(victim) == 1
    assert finish_run(victim).status == "CANCELLED"
    # Untouched: the other queue, and every callback.
    assert scalar("SELECT count(*) FROM dramatiq.queue WHERE queue_name = 'reports'") == 2
    assert callbacks_queued(finishing) == 1

    everything = clean_queues(None)
    assert everything.deleted == 2 and everything.kept_callbacks == 2


# -- status, workers, health ---------------------------------------------------------------


def test_status_json_has_the_documented_shape_and_names_queues_without_consumer(database_url):
    submit(3)
    result = invoke("status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {
        "checked_at",
        "max_hours",
        "runs",
        "queues",
        "tenants",
        "workers",
        "endpoints",
        "warnings",
    }
    assert data["endpoints"] == []  # no worker has used an endpoint limit yet
    assert set(data["runs"]) == {"by_status", "unfinished", "stuck", "active"}
    assert data["runs"]["by_status"]["QUEUED"] == 1 and data["runs"]["unfinished"] == 1
    (queue,) = data["queues"]
    assert queue == {
        "queue": "rhesis-tests", "queued": 3, "consumed": 0, "rejected": 0, "done": 0,
        "oldest_queued_age_s": queue["oldest_queued_age_s"], "consumers": 0,
    }  # fmt: skip
    assert data["workers"] == {"live": 0, "stopped": 0, "dead": 0, "list": []}
    codes = [w["code"] for w in data["warnings"]]
    server_findings = [] if server_autovacuum() else ["autovacuum_off"]
    assert sorted(codes) == sorted(["no_live_worker", "queue_without_consumer", *server_findings])
    assert set(data["warnings"][codes.index("queue_without_consumer")]) == {
        "code",
        "severity",
        "message",
        "recommendation",
        "subject",
    }

    text_out = invoke("status").output
    assert "queue rhesis-tests has 3 waiting messages" in text_out
    assert "QUEUE         QUEUED  CONSUMED  REJECTED  DONE  OLDEST QUEUED  CONSUMERS" in text_out


def test_status_of_an_empty_system(database_url):
    result = invoke("status")
    assert result.exit_code == 0
    assert "ACTIVE RUNS (0)" in result.output and "STUCK RUNS: 0" in result.output
    assert status().snapshot.runs.matching == 0


def test_workers_lists_registered_workers_and_what_they_hold(database_url):
    run_id = submit(2)
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rhesis.workers (id, host, pid, queues, heartbeat_at) VALUES "
                "('00000000-0000-0000-0000-0000000000aa', 'gone', 4242, '{rhesis-tests}', "
                "now() - interval '1 hour')"
            )
        )
        conn.execute(
            text(
                "WITH m AS (UPDATE dramatiq.queue SET state = 'consumed' WHERE message_id = "
                "(SELECT message_id FROM rhesis.test_results WHERE run_id = :r AND test_id = 't0')"
                " RETURNING message_id) INSERT INTO rhesis.claims (message_id, worker_id, token, "
                "queue_name) SELECT message_id, '00000000-0000-0000-0000-0000000000aa', "
                "gen_random_uuid(), 'rhesis-tests' FROM m"
            ),
            {"r": run_id},
        )
    result = invoke("workers", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["live"], data["dead"]) == (0, 1)
    (worker,) = data["workers"]
    assert worker["alive"] is False and worker["host"] == "gone" and worker["pid"] == 4242
    assert worker["heartbeat_age_s"] > 3500
    (running,) = worker["running"]
    assert (running["run_id"], running["test_id"], running["actor"]) == (
        run_id,
        "t0",
        "execute_single_test",
    )
    human = invoke("workers").output
    assert "gone:4242" in human and "dead" in human and "1h00m" in human
    # A worker dead for an hour still holding a message: an orphan backlog.
    report = check_health()
    assert "orphan_backlog" in [p.code for p in report.problems]


def test_health_json_lists_the_reasons(database_url):
    submit(1)
    result = invoke("health", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False and data["status"] == "unhealthy"
    assert [p["code"] for p in data["problems"]] == ["no_live_worker", "queue_without_consumer"]
    assert data["live_workers"] == 0 and data["stuck_runs"] == 0
    assert set(data) == {
        "healthy", "status", "checked_at", "max_hours", "live_workers", "stuck_runs",
        "problems", "warnings",
    }  # fmt: skip


# -- fix ---------------------------------------------------------------------------------


def test_fix_asks_about_stuck_runs_and_revokes_old_ones_without_asking(database_url):
    # Given: a run stuck for 45 minutes (offered) and one stuck for 3 hours (automatic).
    offered = submit(name="stuck-45m")
    backdate(offered, created_h=0.75)
    ancient = submit(name="stuck-3h")
    backdate(ancient, created_h=3)
    fresh = submit(name="fresh")

    result = invoke("fix", input="n\n")
    assert result.exit_code == 1, result.output
    assert f"Revoke run {offered} (stuck-45m, queued for 45m" in result.output
    assert f"left run {offered} as it is" in result.output
    assert f"revoked run {ancient} (stuck-3h)" in result.output
    assert "RECOMMENDATIONS" in result.output
    assert f"rhesis-monitor revoke {offered}" in result.output
    assert "start a worker with -Q rhesis-tests or fix the queue name" in result.output
    assert get_run(ancient).cancelled == 3
    assert get_run(offered).done == 0 and get_run(fresh).done == 0


def test_fix_yes_revokes_every_stuck_run_and_dry_run_changes_nothing(database_url):
    offered = submit(name="stuck-45m")
    backdate(offered, created_h=0.75)
    before = state_of_everything()
    dry = invoke("fix", "--dry-run", "--json")
    assert dry.exit_code == 1, dry.output  # problems remain: no worker, a stuck run
    data = json.loads(dry.stdout)
    assert [o["action"] for o in data["revoked"]] == ["would_revoke"]
    assert state_of_everything() == before

    result = invoke("fix", "--yes", "--json")
    data = json.loads(result.stdout)
    assert [o["run_id"] for o in data["revoked"]] == [offered]
    assert data["declined"] == []
    assert "stuck_runs" not in [r["code"] for r in data["recommendations"]]
    assert "runs_cancelling" in [r["code"] for r in data["recommendations"]]
    assert get_run(offered).cancelled == 3


def test_the_fix_policy_offers_young_stuck_runs_revokes_old_ones_and_recommends(database_url):
    # Given: runs stuck for 45 minutes and for 3 hours, a fresh one, and one stuck for an
    # hour that is already revoked (it waits for its callback: not stuck any more).
    offered = submit(name="stuck-45m")
    backdate(offered, created_h=0.75)
    ancient = submit(name="stuck-3h")
    backdate(ancient, created_h=3)
    submit(name="fresh")
    cancelling = submit(name="revoked")
    revoke_runs([cancelling])
    backdate(cancelling, created_h=1, started_h=1, progress_h=1)
    before = state_of_everything()

    # When: the plan is made (no CLI), nothing changes; the stuck runs are split by age.
    plan = plan_fix(stuck_minutes=30, auto_revoke_hours=2)
    assert state_of_everything() == before
    assert [r.id for r in plan.stuck] == [ancient, offered]
    assert [r.id for r in plan.offered] == [offered]
    assert [r.id for r in plan.automatic] == [ancient]
    assert plan.before.snapshot.runs.stuck == 3  # the status still counts the revoked one

    # Then: each step revokes one run or leaves it; the report recommends what is left.
    plan.decline(plan.offered[0])
    (outcome,) = [plan.revoke(run) for run in plan.automatic]
    assert (outcome.run_id, outcome.action, outcome.cancelled_tests) == (ancient, "revoked", 3)
    assert get_run(ancient).cancelled == 3 and get_run(offered).done == 0
    report = plan.report()
    assert report.declined == [offered] and [o.run_id for o in report.revoked] == [ancient]
    first = report.recommendations[0]
    assert (first.code, first.message) == ("stuck_runs", "1 stuck run left as they are")
    assert f"`rhesis-monitor revoke {offered}`" in first.recommendation
    (waiting,) = [f for f in report.recommendations if f.code == "runs_cancelling"]
    assert waiting.message == "2 revoked runs wait for their callback"
    assert not report.healthy
    data = json.loads(json.dumps(report.as_dict()))
    assert set(data) == {
        "dry_run", "stuck_minutes", "auto_revoke_hours", "status", "stuck", "revoked",
        "declined", "recommendations", "healthy",
    }  # fmt: skip
    assert [r["run_id"] for r in data["stuck"]] == [ancient, offered]
    assert (data["dry_run"], data["declined"], data["healthy"]) == (False, [offered], False)


def test_apply_fix_decides_without_questions_and_its_dry_run_changes_nothing(database_url):
    older = submit(name="stuck-50m")
    backdate(older, created_h=50 / 60)
    offered = submit(name="stuck-45m")
    backdate(offered, created_h=0.75)
    ancient = submit(name="stuck-3h")
    backdate(ancient, created_h=3)
    before = state_of_everything()

    dry = apply_fix(plan_fix(30, 2, dry_run=True))
    assert [o.action for o in dry.revoked] == ["would_revoke"] * 3 and dry.declined == []
    assert dry.recommendations == dry.before.findings
    assert state_of_everything() == before

    report = apply_fix(plan_fix(30, 2), revoke_offered=lambda run: run.name == "stuck-45m")
    assert [o.run_id for o in report.revoked] == [offered, ancient]  # offered ones first
    assert report.declined == [older]
    assert get_run(older).done == 0 and get_run(offered).cancelled == 3


def _run(n, *, cancel_requested=False):
    return Run(
        id=str(uuid.UUID(int=n)), name=f"run-{n}", status="QUEUED", organization_id=None,
        user_id=None, total=1, done=0, passed=0, failed=0, errored=0, lost=0, cancelled=0,
        cancel_requested=cancel_requested, created_at=datetime.now(timezone.utc),
        started_at=None, finished_at=None, last_progress_at=None, collected_count=0,
        summary=None,
    )  # fmt: skip


def test_recommendations_after_a_fix_name_the_runs_left_and_those_waiting_for_a_callback():
    # The status read afterwards still counts the revoked run as stuck (it stays unfinished
    # until its callback runs): that finding is replaced by one naming the runs left.
    snapshot = _snapshot([_worker(True)], stuck=1)
    snapshot.runs = RunListing([_run(1, cancel_requested=True)], 1, 1)
    after = Status(datetime.now(timezone.utc), snapshot, diagnose(snapshot))
    assert [f.code for f in after.findings] == ["stuck_runs"]

    assert [f.code for f in recommendations_after(after, [])] == ["runs_cancelling"]
    left = [_run(n) for n in range(2, 14)]
    stuck, waiting = recommendations_after(after, left)
    assert (stuck.code, stuck.severity) == ("stuck_runs", "problem")
    assert stuck.message == "12 stuck runs left as they are"
    ids = " ".join(r.id for r in left[:10])
    assert stuck.recommendation.startswith(f"revoke them with `rhesis-monitor revoke {ids} ...`")
    assert (waiting.code, waiting.severity) == ("runs_cancelling", "warning")
    assert waiting.message == "1 revoked run wait for their callback"


def test_serve_health_on_a_port_in_use_is_a_usage_error(database_url):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve-health", "--port", str(port), "--host", "127.0.0.1")
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_a_run_whose_callback_failed_for_good_is_named_and_revoke_enqueues_it_again(
    database_url,
):
    # Given: a run with every outcome stored whose callback was rejected after its retries.
    run_id = submit(2)
    record_outcome(run_id, "t0", status="passed")
    record_outcome(run_id, "t1", status="failed")
    callback = callback_message_id(run_id)
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE dramatiq.queue SET state = 'rejected', "
                "message = jsonb_set(message, '{options,retries}', '10') WHERE message_id = :m"
            ),
            {"m": callback},
        )

    health = check_health()
    (stalled,) = [p for p in health.problems if p.code == "stalled_callbacks"]
    assert run_id in stalled.recommendation
    before = state_of_everything()
    dry = invoke("revoke", run_id, "--dry-run", "--json")
    assert json.loads(dry.stdout)["runs"][0]["action"] == "would_requeue_callback"
    assert state_of_everything() == before

    result = invoke("revoke", run_id)
    assert result.exit_code == 0, result.output
    assert "callback had failed for good; enqueued it again" in result.output
    row = scalar(
        "SELECT state::text || ':' || COALESCE(message->'options'->>'retries', '0') "
        "FROM dramatiq.queue WHERE message_id = :m",
        m=callback,
    )
    assert row == "queued:0"
    assert "stalled_callbacks" not in [p.code for p in check_health().problems]
    # Not cancelled: every test ran. The callback finishes it as usual.
    assert finish_run(run_id).status == "COMPLETED"
