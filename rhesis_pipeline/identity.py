"""Who this process is, as recorded on the results it produces."""

from __future__ import annotations

import os
import socket

_cached: tuple[int, str] | None = None


def worker_id() -> str:
    """``host:pid`` of this process (a forked child gets its own: keyed by pid)."""
    global _cached
    pid = os.getpid()
    if _cached is None or _cached[0] != pid:
        _cached = (pid, f"{socket.gethostname()}:{pid}")
    return _cached[1]
