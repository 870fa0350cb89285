"""Suite files: read one (JSON or YAML), refuse what cannot be read safely, validate it.

What a suite holds is in :mod:`rhesis_pipeline.suites.schema`, how it is checked in
:mod:`rhesis_pipeline.suites.validate`. This module refuses, while reading and before
anything is built from the file: files larger than :data:`MAX_SUITE_BYTES`, text that is
not UTF-8, duplicate keys (JSON here, YAML in :mod:`rhesis_pipeline.suites.yaml_reader`),
YAML aliases that expand past a bound, nesting deeper than Python's recursion limit and
numbers longer than Python reads. Each refusal is one line naming the file and, where
there is one, the position.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from rhesis_pipeline.suites.schema import InvalidSuite, Suite
from rhesis_pipeline.suites.validate import validate_suite

#: Largest suite file read, in bytes (10 MiB: tens of thousands of tests).
MAX_SUITE_BYTES = 10 * 1024 * 1024


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises InvalidSuite listing every problem."""
    p = Path(path)
    source = str(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)
    except FileNotFoundError:
        raise InvalidSuite(f"{source}: no such file") from None
    except OSError as exc:
        raise InvalidSuite(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise InvalidSuite(
            f"{source}: the file is larger than {MAX_SUITE_BYTES // (1024 * 1024)} MiB; "
            "split it into several suites"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidSuite(
            f"{source}: not UTF-8 text (byte {exc.start} is not UTF-8); save it as UTF-8"
        ) from None
    return validate_suite(parse_text(text, source), source)


def parse_text(text: str, source: str) -> Any:
    """Parse JSON or YAML text; InvalidSuite naming the file and the position if neither,
    or if it repeats a key, nests too deeply, or expands YAML aliases too far."""
    import yaml

    from rhesis_pipeline.suites import yaml_reader as suite_yaml

    try:
        if text.lstrip().startswith(("{", "[")):
            return json.loads(text, object_pairs_hook=_unique_keys)
        return suite_yaml.load(text)
    except json.JSONDecodeError as exc:
        raise InvalidSuite(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (suite_yaml.RefusedYAML, _DuplicateKey) as exc:
        raise InvalidSuite(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidSuite(f"{source}: not valid JSON or YAML: {problem}{where}") from None
    except RecursionError:
        raise InvalidSuite(
            f"{source}: nested too deeply to read; a suite needs a few levels only"
        ) from None
    except ValueError as exc:  # a number longer than Python reads
        digits = re.search(r"value has (\d+) digits", str(exc))
        if "integer string conversion" not in str(exc):
            raise InvalidSuite(f"{source}: not valid JSON or YAML: {exc}") from None
        size = f"of {digits.group(1)} digits " if digits else ""
        raise InvalidSuite(
            f"{source}: a number {size}is longer than the {_max_digits()} digits allowed; "
            "quote it to keep it as text"
        ) from None


def _max_digits() -> int:
    """The longest integer, in digits, that Python converts from text (4300 by default)."""
    limit: int = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
    return limit


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a JSON object whose keys are unique (json keeps the last)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(f"duplicate key {key!r}; a key may appear once in an object")
        data[key] = value
    return data
