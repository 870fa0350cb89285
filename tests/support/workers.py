"""Real ``dramatiq`` worker and ``periodiq`` scheduler processes for tests, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

#: Modules every test worker imports: the product's actors and the test actors.
DEFAULT_MODULES = ("rhesis_pipeline.actors", "tests.support.actors")
READY_LINE = "Worker process is ready for action."
#: What periodiq logs once it has imported the broker and actors, before its first tick.
SCHEDULER_READY_LINE = "Registered periodic actors:"
#: The repository root: the working directory and import path of the processes.
REPO = Path(__file__).resolve().parent.parent.parent


class WorkerProcess:
    """A started ``dramatiq`` (or ``periodiq``) command, the leader of its own session."""

    def __init__(
        self,
        proc: subprocess.Popen,
        log_path: Path,
        processes: int,
        ready_line: str = READY_LINE,
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.processes = processes
        self.ready_line = ready_line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(self.ready_line) >= self.processes:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.proc.returncode} before it was ready:\n{self.log()}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful), then SIGKILL of the whole process group after *timeout*."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class WorkerPool:
    """Starts worker and scheduler processes against one database (any server: the
    session's, or an OwnedServer's) and stops them all at the end."""

    def __init__(self, *, database_url: str, log_dir: Path, cwd: Path = REPO) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.cwd = cwd
        self.started: list[WorkerProcess] = []

    def start(
        self,
        *,
        processes: int = 1,
        threads: int = 2,
        modules: Sequence[str] = DEFAULT_MODULES,
        queues: Sequence[str] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        cmd = [sys.executable, "-m", "dramatiq", *modules, "-p", str(processes), "-t", str(threads)]
        if queues:
            cmd += ["-Q", *queues]
        worker = self._spawn(cmd, "worker", env, processes=processes, ready_line=READY_LINE)
        if wait:
            worker.wait_ready()
        return worker

    def start_scheduler(
        self,
        *,
        modules: Sequence[str] = ("rhesis_pipeline.actors",),
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        """Start ``periodiq`` (the scheduler) with ``TZ=UTC``, as ``bin/scheduler`` does.

        periodiq has no ``__main__``: this runs the venv's ``periodiq`` script with this
        interpreter. *env* overrides the environment (``RHESIS_SWEEP_CRON``, ...); *wait*
        returns once it has registered its periodic actors. Stopped by ``stop_all``.
        """
        script = Path(sys.executable).parent / "periodiq"
        if script.exists():
            cmd = [sys.executable, str(script), *modules]
        else:  # an interpreter without the console script next to it
            cmd = [sys.executable, "-c", "from periodiq import entrypoint; entrypoint()", *modules]
        scheduler = self._spawn(
            cmd,
            "scheduler",
            {"TZ": "UTC", **(env or {})},
            processes=1,
            ready_line=SCHEDULER_READY_LINE,
        )
        if wait:
            scheduler.wait_ready()
        return scheduler

    def _spawn(
        self,
        cmd: list[str],
        kind: str,
        env: dict[str, str] | None,
        *,
        processes: int,
        ready_line: str,
    ) -> WorkerProcess:
        log_path = self.log_dir / f"{kind}-{len(self.started)}.log"
        full_env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "RHESIS_LOG_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join(
                [str(self.cwd), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            **(env or {}),
        }
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = WorkerProcess(proc, log_path, processes, ready_line)
        self.started.append(started)
        return started

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


class Supervisor:
    """Restarts a `dramatiq` command whenever it exits, as a Procfile platform, systemd or
    Kubernetes would; counts the exits."""

    def __init__(self, pool, **start):
        self.pool, self.start, self.exits = pool, start, 0
        self._stop = threading.Event()
        self.current = pool.start(**start)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            if self.current.proc.poll() is None:
                time.sleep(0.05)
                continue
            self.exits += 1
            if not self._stop.is_set():
                self.current = self.pool.start(**self.start)

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        self.current.stop()
