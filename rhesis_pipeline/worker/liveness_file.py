"""A worker process's liveness on the pod's own disk, for the Kubernetes liveness probe.

The registry (:mod:`rhesis_pipeline.worker.registry`) decides liveness in the database:
a worker whose heartbeat thread or liveness lock is gone for longer than the lock grace
is dead. A liveness probe that asked the database would fail on every pod during a
Postgres failover and get every worker restarted in a loop, although each is only
waiting for the database. So each worker process's heartbeat thread also writes a small
JSON status file here, before and after every round, saying when it last went round and
what it holds:

* ``holding``: the last round heartbeat and holds the liveness lock;
* ``lock-waiting``: the database answers but the lock is still held by the process's
  previous session (the server has not noticed it is gone yet);
* ``db-waiting``: the database cannot be reached; the thread is reconnecting.

``rhesis-pipeline probe worker`` (:func:`probe`) reads these files without the database
and fails only when a live process's file is older than the lock grace
(3 x ``RHESIS_HEARTBEAT_INTERVAL_S``, written into the file by the process itself): its
heartbeat thread is gone or the whole process is frozen. Waiting for the database
passes. A round's longest silence is the longer of a connect attempt (10 s connect
timeout) and the backoff between tries (at most one interval), both under the default
grace of 15 s.

Files live in ``RHESIS_RUN_DIR`` (one per process, ``worker-<pid>.json``, written
atomically by rename); a clean stop removes its file, and files of processes that no
longer exist are ignored (and removed) by the probe.

This module imports nothing but the standard library at its top, so that the image's
entry point can load it by path and answer ``probe worker`` without importing the
package (:func:`main`): ~0.05 s instead of ~0.5 s for the CLI on an idle 2-core machine,
and three times that under load, against a probe timeout of a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: What a status file says the heartbeat thread is doing (see the module docstring).
HOLDING, LOCK_WAITING, DB_WAITING = "holding", "lock-waiting", "db-waiting"
STATES = (HOLDING, LOCK_WAITING, DB_WAITING)
_PREFIX, _SUFFIX = "worker-", ".json"


def run_dir() -> Path:
    """The directory of the status files: ``RHESIS_RUN_DIR``."""
    from rhesis_pipeline.storage import engine

    return engine.settings().run_dir


class LivenessFile:
    """The status file of one worker process; :meth:`write` it every heartbeat round.

    Writing never raises: a full or read-only disk is logged once and the worker goes
    on (the probe then fails, which is the truth: the pod cannot show it is live)."""

    def __init__(self, worker_id: str, grace_s: float, directory: Path | None = None) -> None:
        self.worker_id = worker_id
        self.grace_s = grace_s
        self.directory = directory if directory is not None else run_dir()
        self.path = self.directory / f"{_PREFIX}{os.getpid()}{_SUFFIX}"
        self._warned = False

    def write(self, state: str) -> None:
        """Record that the heartbeat thread is going round now, in *state*."""
        body = {
            "pid": os.getpid(),
            "worker_id": self.worker_id,
            "state": state,
            "beat_at": time.time(),
            "grace_s": self.grace_s,
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(body))
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._warned:
                logger.warning("cannot write the liveness file %s: %s", self.path, exc)
                self._warned = True

    def remove(self) -> None:
        """Remove the file (a clean stop: the process is no longer a worker)."""
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass(frozen=True)
class Status:
    """What one status file says, read by the probe."""

    pid: int
    worker_id: str
    state: str
    beat_at: float
    grace_s: float

    def silent_s(self, now: float) -> float:
        """Seconds since the heartbeat thread last went round."""
        return max(0.0, now - self.beat_at)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def read_statuses(directory: Path) -> list[Status]:
    """The status files of live processes in *directory* (files of processes that no
    longer exist are removed; unreadable or half-written files are skipped)."""
    statuses = []
    try:
        paths = sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}"))
    except OSError:
        return []
    for path in paths:
        try:
            raw = json.loads(path.read_text())
            status = Status(
                pid=int(raw["pid"]),
                worker_id=str(raw["worker_id"]),
                state=str(raw["state"]),
                beat_at=float(raw["beat_at"]),
                grace_s=float(raw["grace_s"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(status.pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        statuses.append(status)
    return statuses


def probe(directory: Path, now: float | None = None) -> tuple[bool, str]:
    """Judge the worker processes of this pod (or host) from their status files:
    ``(live, one line)``. Not live when no process has a file, or when one's heartbeat
    thread has been silent for longer than its grace."""
    now = time.time() if now is None else now
    statuses = read_statuses(directory)
    if not statuses:
        return False, (
            f"no worker process has written a liveness file in {directory} "
            "(not started yet, or RHESIS_RUN_DIR differs from the worker's)"
        )
    for status in statuses:
        silent = status.silent_s(now)
        if silent > status.grace_s:
            return False, (
                f"worker process {status.pid} (worker {status.worker_id[:8]}): its heartbeat "
                f"thread has been silent for {silent:.1f} s, longer than the grace of "
                f"{status.grace_s:g} s (last state {status.state}); restart it"
            )
    waiting = sum(1 for s in statuses if s.state != HOLDING)
    line = f"ok: {len(statuses)} worker process(es) heartbeating"
    if waiting:
        line += f", {waiting} waiting for the database or its lock"
    return True, line


def report(directory: Path) -> int:
    """Print :func:`probe`'s line as ``rhesis-pipeline probe worker`` does; its exit code."""
    live, line = probe(directory)
    if live:
        print(line)
        return 0
    print(f"rhesis-pipeline: probe worker failed: {line}", file=sys.stderr)
    return 1


def main() -> int:
    """The entry point's fast ``probe worker``: ``RHESIS_RUN_DIR`` must be set (the image
    sets it); loaded by path, so the package is not imported."""
    return report(Path(os.environ["RHESIS_RUN_DIR"]).expanduser())
