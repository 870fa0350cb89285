"""Where an export goes: a file written whole or not at all, or standard output.

An export to a file is written to a temporary file beside it (``.NAME.XXXX.tmp``, in
the same directory, so the rename is atomic) and renamed over *path* only when the
writer has finished: a failed or interrupted export leaves no partial file, and a CI
job never reads half a JUnit report. :func:`check_output` refuses a path that cannot be
written before any work starts (a command checks its ``--output`` before submitting a
run or reading one).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from rhesis_pipeline.errors import RhesisError


class OutputError(RhesisError):
    """An export cannot be written where it was asked (or in the format asked); the
    message names the path and the fix."""

    exit_code = 2


def check_output(path: str | os.PathLike[str]) -> Path:
    """*path* as a Path, if a file can be written there; else OutputError."""
    target = Path(path)
    parent = target.parent  # Path("f.xml").parent is Path(".")
    if target.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory; give a file name")
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {path}: directory {parent} does not exist; create it or "
            "choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {path}: directory {parent} is not writable; choose another path"
        )
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"cannot write {path}: the file is read-only; choose another path")
    return target


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary stream whose bytes become file *path* when the block ends without an
    exception (atomic rename); on an exception the temporary file is removed and *path*
    is left as it was. Raises OutputError when the file cannot be created."""
    target = check_output(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; choose another path") from exc
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
        # mkstemp makes the file 0600: give it the mode a new file would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, target)
    except OSError as exc:
        _remove(temp)
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}; free space or choose another path"
        ) from exc
    except BaseException:
        _remove(temp)
        raise


def _remove(temp: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(temp)
