"""JSONPath expressions, compiled once: an HTTP endpoint's ``response_path`` and the
``json_path_equals`` metric's ``path`` (jsonpath-ng's extended syntax, filters included).

A suite is validated with the same parser the worker uses, so a path that validation
accepts is one the worker can apply.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jsonpath_ng import JSONPath

#: Distinct paths kept compiled per process (a run uses a handful).
CACHED_PATHS = 256


@lru_cache(maxsize=CACHED_PATHS)
def compile_json_path(path: str) -> JSONPath:
    """The compiled expression of *path*; raises jsonpath-ng's error (any Exception
    subclass, with the position in its message) when *path* does not parse."""
    from jsonpath_ng.ext.parser import parse

    return parse(path)
