"""What a value from a user may hold so that it can be stored and sent.

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000, and UTF-8 cannot encode a lone
surrogate (U+D800..U+DFFF), which JSON's and YAML's ``"\\ud800"`` escapes, and bytes that
are not UTF-8 in a command line, decode to. JSON has no NaN or Infinity, which Python's
``json`` and YAML's ``.nan``/``.inf`` produce. Any of them failed a submission only when
it was written (reported as a database problem, or as a traceback); :func:`problems`
finds them all first, each with its path, so that validation can name them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

#: A lone surrogate (Python strings hold no surrogate pairs: any surrogate is lone).
SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why *text* cannot be stored, as the end of a sentence ("contains …"), or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000): remove it"
    found = SURROGATE.search(text)
    if found:
        return (
            f"contains a lone surrogate (\\u{ord(found.group()):04x}), which cannot be stored: "
            "remove it (an escape like \\ud800, or a byte that is not UTF-8, makes one)"
        )
    return None


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to *limit* characters ("..." at the end), to quote a user's
    value in a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number_problem(value: float) -> str | None:
    """Why the float *value* cannot be stored ("is not a finite number"), or None."""
    if math.isfinite(value):
        return None
    return f"{value!r} is not a finite number; JSON has no NaN or Infinity: write a number"


def problems(value: Any, describe: Callable[[tuple[Any, ...]], str]) -> list[str]:
    """Every problem in *value*, a tree of dicts, lists and scalars, as a sentence
    starting with ``describe(path)`` (a path is a tuple of keys and indexes): text that
    :func:`text_problem` refuses, in values and keys, and non-finite numbers. Iterative,
    so any depth is walked without recursion; a node that appears several times (a YAML
    alias) is walked each time."""
    found: list[str] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                found.append(f"{describe(path)} {problem}")
        elif isinstance(item, float):
            problem = number_problem(item)
            if problem:
                found.append(f"{describe(path)}: {problem}")
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    found.append(f"{describe(path)}: the key {key!r} {problem}")
                children.append((child, (*path, key)))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in reversed(list(enumerate(item))))
    return found
