"""Durations as operators read them (used by records, reports, the CLIs and the dashboard).

:func:`format_duration` is how long something took (a test, a run): precise below a
minute. :func:`format_seconds` is an age ("3h12m ago"): whole seconds.
"""

from __future__ import annotations


def format_seconds(value: float | None) -> str:
    """A duration as operators read it: "45s", "12m05s", "3h12m", "2d03h" ("-": None)."""
    if value is None:
        return "-"
    seconds = max(int(value), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def format_duration(value: float | None) -> str:
    """How long something took, with the precision it deserves: "0.43s", "4.07s",
    "12.3s", "1m15s", "12m05s", "3h12m" ("-": None). *value*: seconds."""
    if value is None:
        return "-"
    value = max(float(value), 0.0)
    if value < 0.001:
        return "0s"
    if value < 10:
        text = f"{value:.2f}" if value >= 0.01 else f"{value:.3f}"
    elif value < 59.95:
        text = f"{value:.1f}"
    else:
        return format_seconds(round(value))
    return text.rstrip("0").rstrip(".") + "s"
