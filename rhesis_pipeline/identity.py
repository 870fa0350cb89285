"""Who this process is, as recorded on the results it produces."""

from __future__ import annotations

import os
import socket


def worker_id() -> str:
    """``host:pid`` of this process (computed each call: a forked child has its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"
