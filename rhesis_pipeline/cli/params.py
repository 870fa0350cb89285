"""Option types both command-line tools share: numbers that are finite and in range, and
text that can be stored.

``click.FloatRange`` accepts ``nan`` (it compares false with every bound), ``inf`` and
``1e308``, which reached SQL as an interval out of range: an 85-line traceback.
:class:`Number` refuses them with click's one-line usage error and exit 2, whether the
value comes from the command line or from the option's ``RHESIS_*`` environment
variable. :class:`Text` refuses a NUL or a lone surrogate (bytes that are not UTF-8 in
the command line decode to one), which no database column can hold.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from rhesis_pipeline.execution.values import text_problem

if TYPE_CHECKING:
    # click 8.3 made ParamType generic (the value it gives, the input it takes); 8.1,
    # which pyproject still allows, cannot be subscripted at run time.
    _NumberType = click.ParamType[float, Any]
    _TextType = click.ParamType[str, Any]
else:
    _NumberType = _TextType = click.ParamType


class Number(_NumberType):
    """A finite number from *minimum* to *maximum* (above *minimum* if *min_open*), whole
    if *integer*. *unit* ("hours") is said in errors; *metavar* shows in ``--help``."""

    def __init__(
        self,
        minimum: float,
        maximum: float,
        *,
        metavar: str,
        unit: str = "",
        integer: bool = False,
        min_open: bool = False,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.metavar = metavar
        self.unit = unit
        self.integer = integer
        self.min_open = min_open
        self.name = metavar.lower()

    @property
    def kind(self) -> str:
        return "a whole number" if self.integer else "a number"

    @property
    def span(self) -> str:
        low, high = _plain(self.minimum), _plain(self.maximum)
        bounds = f"above {low} and at most {high}" if self.min_open else f"from {low} to {high}"
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.kind} {bounds}{unit}"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, bool):
            self.fail(f"{value!r} is not {self.kind}; give {self.span}", param, ctx)
        if isinstance(value, int | float):
            number: float = value
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        else:
            shown = str(value).strip()
            try:
                number = int(shown) if self.integer else float(shown)
            except ValueError:
                self.fail(f"{value!r} is not {self.kind}; give {self.span}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{shown!r} is not a finite number; give {self.span}", param, ctx)
        low_ok = number > self.minimum if self.min_open else number >= self.minimum
        if not low_ok or number > self.maximum:
            self.fail(f"{shown} is out of range; give {self.span}", param, ctx)
        return int(number) if self.integer else float(number)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.metavar


def _plain(value: float) -> str:
    """A bound as people write it: 100000, 0.5 (never 1e+05)."""
    return str(int(value)) if float(value).is_integer() else f"{value}"


class Text(_TextType):
    """Text without a NUL or a lone surrogate (see
    :func:`rhesis_pipeline.execution.values.text_problem`)."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = text_problem(str(value))
        if problem:
            self.fail(f"{value!r} {problem}", param, ctx)
        return str(value)


#: The bound of every time option: 100,000 hours (11 years).
MAX_HOURS = 100_000
HOURS = Number(0, MAX_HOURS, metavar="HOURS", unit="hours")
MINUTES = Number(0, MAX_HOURS * 60, metavar="MINUTES", unit="minutes")
#: A timeout: more than 0 seconds, at most 100,000 hours.
TIMEOUT_SECONDS = Number(0, MAX_HOURS * 3600, metavar="SECONDS", unit="seconds", min_open=True)
PORT = Number(0, 65535, metavar="PORT", integer=True)
TEXT = Text()


def count(minimum: int, maximum: int, metavar: str = "N") -> Number:
    """A whole number from *minimum* to *maximum* (processes, threads, a limit)."""
    return Number(minimum, maximum, metavar=metavar, integer=True)
