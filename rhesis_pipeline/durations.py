"""Durations as operators read them (used by records, reports and the CLIs)."""

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
