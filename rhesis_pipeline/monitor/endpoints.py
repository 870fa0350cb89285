"""Endpoint limits as the operator sees them: per limit key, what is declared, what the
workers learned (the adaptive limit), what is in flight and waiting, and the 429s.

The system's view only: a key names an endpoint (or a provider key) that several
tenants' suites may share, so a tenant's status does not list them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rhesis_pipeline.storage import db, engine
from rhesis_pipeline.storage.queries import Q


@dataclass
class EndpointStats:
    key: str
    max_concurrency: int
    #: Whether a suite declared max_concurrency (else the default ceiling).
    declared: bool
    requests_per_minute: int | None
    #: The adaptive limit now (halved on a 429, +1 per that many successes).
    current_limit: float
    in_flight: int
    #: Tests waiting for a slot or a token, in the live workers.
    waiting: int
    #: Seconds left of a 429's pause (0: not paused).
    paused_for_s: float
    throttled_last_minute: int
    throttled_total: int
    requests_total: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "max_concurrency": self.max_concurrency,
            "declared": self.declared,
            "requests_per_minute": self.requests_per_minute,
            "current_limit": round(self.current_limit, 2),
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "paused_for_s": round(self.paused_for_s, 3),
            "throttled_last_minute": self.throttled_last_minute,
            "throttled_total": self.throttled_total,
            "requests_total": self.requests_total,
        }


def endpoint_stats() -> list[EndpointStats]:
    """Every limit key a worker has used, by key."""
    with db.connect() as conn:
        rows = conn.execute(
            Q["endpoint_limits_status"],
            {"lease_timeout_s": engine.settings().heartbeat_timeout_s},
        ).all()
    return [
        EndpointStats(
            key=r.key,
            max_concurrency=int(r.max_concurrency),
            declared=bool(r.declared),
            requests_per_minute=r.requests_per_minute,
            current_limit=float(r.current_limit),
            in_flight=int(r.in_flight),
            waiting=int(r.waiting),
            paused_for_s=float(r.paused_for_s),
            throttled_last_minute=int(r.throttled_last_minute),
            throttled_total=int(r.throttled_total),
            requests_total=int(r.requests_total),
        )
        for r in rows
    ]
