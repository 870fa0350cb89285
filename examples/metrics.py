"""Python metrics for examples/scored-suite.yaml: your own scoring code, by example.

A metric is ``{type: python, target: "examples.metrics:keyword_score", ...params}``; the
function gets a :class:`~rhesis_pipeline.execution.metrics.MetricInput` and returns a bool,
a score in [0, 1] or ``{passed, score, reason}``.
"""

from __future__ import annotations

from typing import Any

from rhesis_pipeline.execution.metrics import MetricInput


def keyword_score(given: MetricInput) -> dict[str, Any]:
    """The share of ``params["keywords"]`` the answer mentions (case-insensitive), as a
    score; the metric's ``threshold`` (default 0.5) decides the verdict."""
    keywords = [str(k) for k in given.params.get("keywords", [])]
    answer = str(given.answer).lower()
    found = [k for k in keywords if k.lower() in answer]
    missing = [k for k in keywords if k not in found]
    return {
        "score": len(found) / len(keywords) if keywords else 0.0,
        "reason": f"mentions {len(found)}/{len(keywords)} keywords"
        + (f" (missing: {', '.join(missing)})" if missing else ""),
    }


async def concise(given: MetricInput) -> float:
    """An ``async def`` metric: 1.0 for an answer of at most ``params["max_words"]``
    words (default 20), falling linearly to 0 at twice that."""
    limit = int(given.params.get("max_words", 20))
    words = len(str(given.answer).split())
    return max(0.0, min(1.0, 2 - words / limit))
