"""Real ``dramatiq`` worker processes for tests, started and always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: Modules every test worker imports: the product's actors and the test actors.
DEFAULT_MODULES = ("rhesis_pipeline.actors", "tests.support.actors")
READY_LINE = "Worker process is ready for action."


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen, log_path: Path, processes: int) -> None:
        self.proc = proc
        self.log_path = log_path
        self.processes = processes

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(READY_LINE) >= self.processes:
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
    """Starts worker processes against one database and stops them all at the end."""

    def __init__(self, *, database_url: str, log_dir: Path, cwd: Path) -> None:
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
        log_path = self.log_dir / f"worker-{len(self.started)}.log"
        cmd = [sys.executable, "-m", "dramatiq", *modules, "-p", str(processes), "-t", str(threads)]
        if queues:
            cmd += ["-Q", *queues]
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
        worker = WorkerProcess(proc, log_path, processes)
        self.started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()
