"""Endpoint limits shared by every worker: concurrency, requests per minute, 429 pauses.

* ``rhesis.endpoint_limits``: one row per limit key (an endpoint's origin, or a suite's
  ``limit_key``): the declared ``max_concurrency`` (or the default), ``requests_per_minute``
  (a token bucket: ``tokens`` refilled at that rate), the adaptive ``current_limit``
  (between 1 and ``max_concurrency``: times 0.75 on a 429, then +1 per ``current_limit``
  successes from 3 s after),
  ``paused_until`` (a 429's ``Retry-After``, for everyone), and counts of 429s.
* ``rhesis.endpoint_leases``: the slots each worker process holds per key (requests in
  flight or about to be), renewed with every exchange. A lease not renewed for
  ``lease_timeout_s`` (its worker died or froze) no longer counts.
* ``rhesis.endpoint_exchange(...)``: one round trip per worker process and tick: returns
  slots it no longer needs, reports successes and 429s, asks for the slots its waiting
  tests need, and gets what the key's limits allow now. Keys are locked in sorted order
  (no deadlock between workers).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


EXCHANGE = r"""
CREATE FUNCTION rhesis.endpoint_exchange(
    p_worker text,
    p_keys text[],
    p_max_concurrency integer[],
    p_declared boolean[],
    p_rpm integer[],
    p_want integer[],
    p_release integer[],
    p_waiting integer[],
    p_successes integer[],
    p_throttles integer[],
    p_pause_s double precision[],
    p_lease_timeout_s double precision
) RETURNS TABLE (
    key text, granted integer, held integer, paused_for_s double precision,
    current_limit double precision, others_waiting integer
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i integer;
    r rhesis.endpoint_limits%ROWTYPE;
    v_now timestamptz := clock_timestamp();
    v_in_flight integer;
    v_others integer;
    v_held integer;
    v_grant integer;
    v_room integer;
    v_rate double precision;
    v_burst double precision;
BEGIN
    FOR i IN SELECT o.ord FROM unnest(p_keys) WITH ORDINALITY AS o(k, ord) ORDER BY o.k LOOP
        INSERT INTO rhesis.endpoint_limits AS l (key, max_concurrency, declared,
                                                 requests_per_minute, current_limit, tokens)
        VALUES (p_keys[i], p_max_concurrency[i], p_declared[i], p_rpm[i],
                CASE WHEN p_declared[i] THEN p_max_concurrency[i]
                     ELSE least(p_max_concurrency[i], 8) END,
                0)
        ON CONFLICT ON CONSTRAINT endpoint_limits_pkey DO UPDATE
        SET max_concurrency = CASE WHEN EXCLUDED.declared OR NOT l.declared
                                   THEN EXCLUDED.max_concurrency ELSE l.max_concurrency END,
            declared = l.declared OR EXCLUDED.declared,
            requests_per_minute = CASE WHEN EXCLUDED.declared OR NOT l.declared
                                       THEN EXCLUDED.requests_per_minute
                                       ELSE l.requests_per_minute END
        WHERE (l.max_concurrency, l.declared, l.requests_per_minute)
              IS DISTINCT FROM (CASE WHEN EXCLUDED.declared OR NOT l.declared
                                     THEN EXCLUDED.max_concurrency ELSE l.max_concurrency END,
                                l.declared OR EXCLUDED.declared,
                                CASE WHEN EXCLUDED.declared OR NOT l.declared
                                     THEN EXCLUDED.requests_per_minute
                                     ELSE l.requests_per_minute END);
        SELECT * INTO r FROM rhesis.endpoint_limits l WHERE l.key = p_keys[i] FOR UPDATE;

        -- 429s: pause the key for everyone; halve the adaptive limit at most once a cooldown.
        IF p_throttles[i] > 0 THEN
            r.paused_until := greatest(coalesce(r.paused_until, v_now),
                                       v_now + make_interval(secs => p_pause_s[i]));
            IF r.last_decrease_at IS NULL
               OR r.last_decrease_at < v_now - make_interval(secs => greatest(1, p_pause_s[i])) THEN
                r.current_limit := greatest(1, r.current_limit * 0.75);
                r.last_decrease_at := v_now;
            END IF;
            IF r.minute_start < v_now - interval '1 minute' THEN
                r.prev_minute_throttles :=
                    CASE WHEN r.minute_start < v_now - interval '2 minutes' THEN 0
                         ELSE r.minute_throttles END;
                r.minute_throttles := 0;
                r.minute_start := date_trunc('minute', v_now);
            END IF;
            r.minute_throttles := r.minute_throttles + p_throttles[i];
            r.throttled_total := r.throttled_total + p_throttles[i];
        END IF;
        -- Successes: additive increase, one slot per current_limit successes, from 3 s
        -- after the last decrease on (the pause and a settling time).
        IF p_successes[i] > 0 AND r.current_limit < r.max_concurrency
           AND (r.last_decrease_at IS NULL OR r.last_decrease_at < v_now - interval '3 seconds')
        THEN
            r.current_limit := least(r.max_concurrency,
                                     r.current_limit + p_successes[i] / r.current_limit);
        END IF;
        r.current_limit := least(r.current_limit, r.max_concurrency);
        r.requests_total := r.requests_total + p_successes[i] + p_throttles[i];

        -- This worker's lease: release, then count what everyone else holds.
        INSERT INTO rhesis.endpoint_leases AS e (key, worker_id, slots, waiting, renewed_at)
        VALUES (p_keys[i], p_worker, 0, 0, v_now)
        ON CONFLICT (key, worker_id) DO NOTHING;
        UPDATE rhesis.endpoint_leases e
        SET slots = greatest(0, e.slots - p_release[i]), renewed_at = v_now
        WHERE e.key = p_keys[i] AND e.worker_id = p_worker
        RETURNING e.slots INTO v_held;
        SELECT coalesce(sum(e.slots), 0), coalesce(sum(e.waiting), 0)
          INTO v_in_flight, v_others
        FROM rhesis.endpoint_leases e
        WHERE e.key = p_keys[i]
          AND e.renewed_at > v_now - make_interval(secs => p_lease_timeout_s)
          AND e.worker_id <> p_worker;
        v_in_flight := v_in_flight + v_held;

        -- Requests per minute: a token bucket refilled continuously at 95 % of the rate,
        -- burst 5 % of a second's worth: at most the rate in any one-second window.
        IF r.requests_per_minute IS NOT NULL THEN
            v_rate := 0.95 * r.requests_per_minute / 60.0;
            v_burst := greatest(1, v_rate / 19);
            r.tokens := least(v_burst, r.tokens
                              + v_rate * extract(epoch FROM v_now - r.refilled_at));
            r.refilled_at := v_now;
        END IF;

        v_grant := 0;
        IF p_want[i] > 0 AND (r.paused_until IS NULL OR r.paused_until <= v_now) THEN
            v_room := greatest(0, floor(r.current_limit)::integer - v_in_flight);
            v_grant := least(p_want[i], v_room);
            IF r.requests_per_minute IS NOT NULL THEN
                v_grant := least(v_grant, greatest(0, floor(r.tokens))::integer);
                r.tokens := r.tokens - v_grant;
            END IF;
        END IF;
        UPDATE rhesis.endpoint_leases e
        SET slots = e.slots + v_grant, waiting = greatest(0, p_waiting[i] - v_grant)
        WHERE e.key = p_keys[i] AND e.worker_id = p_worker;
        UPDATE rhesis.endpoint_limits l
        SET current_limit = r.current_limit, tokens = r.tokens, refilled_at = r.refilled_at,
            paused_until = r.paused_until, last_decrease_at = r.last_decrease_at,
            minute_start = r.minute_start, minute_throttles = r.minute_throttles,
            prev_minute_throttles = r.prev_minute_throttles,
            throttled_total = r.throttled_total, requests_total = r.requests_total,
            updated_at = v_now
        WHERE l.key = p_keys[i];

        key := p_keys[i];
        granted := v_grant;
        held := v_held + v_grant;
        paused_for_s := greatest(0, extract(epoch FROM coalesce(r.paused_until, v_now) - v_now));
        current_limit := r.current_limit;
        others_waiting := v_others;
        RETURN NEXT;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rhesis.endpoint_limits (
            key text PRIMARY KEY,
            max_concurrency integer NOT NULL CHECK (max_concurrency >= 1),
            declared boolean NOT NULL DEFAULT false,
            requests_per_minute integer CHECK (requests_per_minute >= 1),
            current_limit double precision NOT NULL,
            tokens double precision NOT NULL DEFAULT 0,
            refilled_at timestamptz NOT NULL DEFAULT now(),
            paused_until timestamptz,
            last_decrease_at timestamptz,
            minute_start timestamptz NOT NULL DEFAULT date_trunc('minute', now()),
            minute_throttles integer NOT NULL DEFAULT 0,
            prev_minute_throttles integer NOT NULL DEFAULT 0,
            throttled_total bigint NOT NULL DEFAULT 0,
            requests_total bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE rhesis.endpoint_leases (
            key text NOT NULL,
            worker_id text NOT NULL,
            slots integer NOT NULL DEFAULT 0,
            waiting integer NOT NULL DEFAULT 0,
            renewed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (key, worker_id)
        )
        """
    )
    op.execute(EXCHANGE)
    # Workers run as the tables' owner; a tenant role has no business here.
    op.execute("REVOKE EXECUTE ON FUNCTION rhesis.endpoint_exchange FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION rhesis.endpoint_exchange")
    op.execute("DROP TABLE rhesis.endpoint_leases")
    op.execute("DROP TABLE rhesis.endpoint_limits")
