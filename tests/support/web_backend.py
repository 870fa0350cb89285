"""The web backend example (examples/web_backend.py) served by a real uvicorn process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .waiting import wait_until

REPO = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_backend(database_url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The example app on 127.0.0.1 with DATABASE_URL *database_url* (and *env*), logging
    to *log*; yields its base URL once it answers; stopped on exit."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.web_backend:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "PYTHONPATH": str(REPO),
                **(env or {}),
            },
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            return httpx.get(f"{base}/docs", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30, what="the web backend answering")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
