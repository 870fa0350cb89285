"""deploy/kubernetes, validated offline: the example overlay renders with kustomize, every
object validates against the Kubernetes 1.30 schemas, and the rules the issue sets hold
in what a cluster would receive (grace period, one scheduler, secrets, probes, KEDA)."""

from __future__ import annotations

import copy
import inspect
import subprocess
from typing import Any

import kubernetes_validate
import pytest

from rhesis_pipeline.runs.messages import CALLBACK, MEMBER
from rhesis_pipeline.runs.options import MAX_TIME_LIMIT_MS
from rhesis_pipeline.worker.shutdown import grace_s

from .support.cli import run, script
from .support.kubernetes import REPO, container, keda_replicas, one, render

KUBERNETES_VERSION = "1.30.0"
POD_OWNERS = {"Deployment", "Job"}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render()


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in POD_OWNERS
    ]


def _default(callable_: Any, parameter: str) -> float:
    """The default of *parameter* in *callable_*'s signature (dramatiq's own settings)."""
    value: float = inspect.signature(callable_).parameters[parameter].default
    return value


def required_grace_s() -> float:
    """Seconds a SIGTERMed worker may need before it exits, from the code: the worker's
    own bound (:func:`rhesis_pipeline.worker.shutdown.grace_s`: the drains) for the longest
    time limit a test or the callback may run under."""
    longest_ms = max(
        MAX_TIME_LIMIT_MS, MEMBER.options["time_limit"], CALLBACK.options["time_limit"]
    )
    return grace_s(longest_ms / 1000)


def grace_problem(worker: dict[str, Any]) -> str | None:
    """Why the worker Deployment's grace is too short to lose nothing (None: it is not)."""
    grace = worker["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    needed = required_grace_s()
    if grace < needed:
        return (
            f"rhesis-worker's terminationGracePeriodSeconds is {grace}, below the longest "
            f"time limit plus the drain ({needed:g} s): a rollout would kill running tests"
        )
    return None


def test_the_example_overlay_renders_every_object(objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    expected = {
        ("Deployment", "rhesis-worker"),
        ("Deployment", "rhesis-scheduler"),
        ("Deployment", "rhesis-dashboard"),
        ("Service", "rhesis-dashboard"),
        ("Job", "rhesis-migrate"),
        ("PodDisruptionBudget", "rhesis-worker"),
        ("ServiceAccount", "rhesis-pipeline"),
        ("ScaledObject", "rhesis-worker"),
        ("Namespace", "rhesis"),
    }
    assert expected <= set(kinds), expected - set(kinds)
    # The overlay sets the namespace and the image tag of every pod.
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "rhesis"
    }
    for name, spec in pod_specs(objects):
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["image"] == "registry.example.com/rhesis-pipeline:0.1.0", (name, c["name"])


def test_every_object_validates_against_the_kubernetes_1_30_schemas(objects):
    checked = 0
    for o in objects:
        if o["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: its fields are checked in test_the_scaled_object_...
        kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked == len(objects) - 1
    # The validator does refuse a wrong object: an unknown field, a wrong type.
    worker = copy.deepcopy(one(objects, "Deployment", "rhesis-worker"))
    container(worker, "worker")["livenessProbe"]["timeoutSecond"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)
    job = copy.deepcopy(one(objects, "Job", "rhesis-migrate"))
    job["spec"]["backoffLimit"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_the_worker_grace_covers_the_longest_time_limit_plus_the_drain(objects):
    worker = one(objects, "Deployment", "rhesis-worker")
    assert grace_problem(worker) is None
    # The check fails when someone lowers the grace below the bound.
    lowered = copy.deepcopy(worker)
    lowered["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = int(
        required_grace_s() - 1
    )
    assert "below the longest time limit plus the drain" in (grace_problem(lowered) or "")


def test_exactly_one_scheduler_stopped_before_its_successor_starts(objects):
    scheduler = one(objects, "Deployment", "rhesis-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}
    assert container(scheduler, "scheduler")["args"] == ["scheduler"]


def test_pods_mount_no_token_run_as_non_root_and_read_their_secrets(objects):
    account = one(objects, "ServiceAccount", "rhesis-pipeline")
    assert account["automountServiceAccountToken"] is False
    specs = pod_specs(objects)
    assert len(specs) == 4
    for name, spec in specs:
        assert spec["serviceAccountName"] == "rhesis-pipeline", name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (name, c["name"])
            env = {e["name"]: e for e in c.get("env", [])}
            # DATABASE_URL (and any token) comes from the Secret, never a literal.
            assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "rhesis-pipeline"
            for key, e in env.items():
                if any(word in key for word in ("TOKEN", "PASSWORD", "SECRET", "DATABASE")):
                    assert "value" not in e, (name, key)
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, (name, c["name"])
    dashboard = container(one(objects, "Deployment", "rhesis-dashboard"), "dashboard")
    token = {e["name"]: e for e in dashboard["env"]}["RHESIS_DASHBOARD_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["key"] == "RHESIS_DASHBOARD_TOKEN"


def test_probes_mean_something(objects):
    worker = container(one(objects, "Deployment", "rhesis-worker"), "worker")
    assert worker["args"] == ["worker"]
    liveness = worker["livenessProbe"]
    assert liveness["exec"]["command"] == ["rhesis-entrypoint", "probe", "worker"]
    # The probe answers in well under a second; its timeout leaves room for a busy node.
    assert liveness["timeoutSeconds"] >= 5
    assert "readinessProbe" not in worker  # a worker serves no traffic
    run_dir = {e["name"]: e.get("value") for e in worker["env"]}["RHESIS_RUN_DIR"]
    assert run_dir in {m["mountPath"] for m in worker["volumeMounts"]}
    deployment = one(objects, "Deployment", "rhesis-dashboard")
    dashboard = container(deployment, "dashboard")
    assert dashboard["args"] == ["dashboard"]
    assert dashboard["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Liveness never asks the database: a failover makes the dashboard unready, not dead.
    assert "tcpSocket" in dashboard["livenessProbe"]
    service = one(objects, "Service", "rhesis-dashboard")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert any(p["name"] == "http" for p in dashboard["ports"])


def test_workers_wait_for_the_migration_and_a_drain_takes_one_at_a_time(objects):
    job = one(objects, "Job", "rhesis-migrate")
    assert container(job, "migrate")["args"] == ["migrate"]
    for name in ("rhesis-worker", "rhesis-scheduler"):
        (init,) = one(objects, "Deployment", name)["spec"]["template"]["spec"]["initContainers"]
        assert "rhesis-pipeline check" in " ".join(init["command"])
    pdb = one(objects, "PodDisruptionBudget", "rhesis-worker")
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = one(objects, "Deployment", "rhesis-worker")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


#: The fields of a ScaledObject's spec (keda.sh/v1alpha1) and of a postgresql trigger's
#: metadata that this manifest may use, from KEDA's documentation: the CRD itself is not
#: vendored, so these checks stand in for its schema.
SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "fallback",
    "triggers",
}  # fmt: skip
POSTGRESQL_METADATA = {
    "query", "targetQueryValue", "activationTargetQueryValue", "connectionFromEnv",
    "host", "port", "userName", "dbName", "sslmode", "passwordFromEnv",
}  # fmt: skip


def test_the_scaled_object_drives_the_worker_deployment_with_the_printed_query(objects):
    scaled = one(objects, "ScaledObject", "rhesis-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
    assert spec["scaleTargetRef"] == {"name": "rhesis-worker"}
    assert 0 <= spec["minReplicaCount"] <= 1 <= spec["maxReplicaCount"]
    assert spec["minReplicaCount"] == 0  # the example overlay scales to zero
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "postgresql"
    meta = trigger["metadata"]
    assert set(meta) <= POSTGRESQL_METADATA, set(meta) - POSTGRESQL_METADATA
    # KEDA reads metadata values as strings; the numbers must parse.
    assert all(isinstance(v, str) for v in meta.values())
    assert float(meta["targetQueryValue"]) > 0
    assert float(meta["activationTargetQueryValue"]) >= 0
    worker = container(one(objects, "Deployment", "rhesis-worker"), "worker")
    assert meta["connectionFromEnv"] in {e["name"] for e in worker["env"]}
    # The query is exactly what `rhesis-monitor keda-query` prints (a real subprocess).
    printed = run("rhesis-monitor", "keda-query")
    assert printed.returncode == 0, printed.stderr
    assert meta["query"] == printed.stdout.strip()
    assert keda_replicas(0, scaled) == 0


def test_keda_query_names_a_bad_queue_in_one_line():
    done = run("rhesis-monitor", "keda-query", "--queue", "x'; DROP TABLE y; --")
    assert done.returncode == 2
    assert "is not a valid queue name" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    done = run("rhesis-monitor", "keda-query", "--queue", "rhesis-tests.DQ")
    assert done.returncode == 2
    assert "name the queue itself" in done.stderr


def test_yamllint_passes_on_deploy_and_fails_on_a_bad_manifest(tmp_path):
    ok = subprocess.run(
        [script("yamllint"), "--strict", "deploy/"], cwd=REPO, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nkind: Service\nmetadata:  {name: x}\n")
    done = subprocess.run(
        [script("yamllint"), "--strict", "-c", str(REPO / ".yamllint"), str(bad)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "duplication of key" in done.stdout
