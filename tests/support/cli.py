"""Running the installed console scripts as real subprocesses, as users do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path


def script(name: str) -> str:
    """Path of console script *name* installed next to this Python (the venv's bin)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"console script {name!r} is not installed: run pip install -e '.[dev]'"
    return found


def run(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run console script *name* with *args*; *env* is added to a copy of os.environ
    (a value of None removes that variable)."""
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run(
        [script(name), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@contextmanager
def serving(command: str, announce: str, database_url: str, *args: str, env=None):
    """Start ``rhesis-monitor COMMAND --port 0 --host 127.0.0.1 ARGS`` as a real process;
    yields ``(proc, url)`` with the URL it announced ("ANNOUNCE <url>"); always stopped."""
    proc = subprocess.Popen(
        [script("rhesis-monitor"), command, "--port", "0", "--host", "127.0.0.1", *args],
        env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        line = proc.stderr.readline()
        while announce not in line:
            assert line, f"{command} exited before serving: {''.join(seen)[-2000:]}"
            seen.append(line)
            line = proc.stderr.readline()
        yield proc, line.split(announce + " ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()


def serve_health(database_url: str, *args: str, env: dict[str, str] | None = None):
    """``rhesis-monitor serve-health``: yields ``(proc, /healthz url)``."""
    return serving("serve-health", "serving health on", database_url, *args, env=env)


def dashboard(database_url: str, *args: str, env: dict[str, str] | None = None):
    """``rhesis-monitor dashboard``: yields ``(proc, base url ending in /)``."""
    return serving("dashboard", "serving dashboard on", database_url, *args, env=env)
