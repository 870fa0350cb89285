-- Runtime SQL of rhesis-pipeline. Each section starts with `-- name: NAME` and a line
-- saying what it does; rhesis_pipeline/queries.py loads them into a dict once.
-- Parameters use SQLAlchemy's :name style.

-- name: enqueue
-- Upsert one message as queued and wake its queue's consumers. Like dramatiq-pg, the
-- NOTIFY payload is the whole message, or only its id from 8000 bytes on (NOTIFY's limit).
WITH enqueued AS (
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
    VALUES (:queue_name, :message_id, 'queued', CAST(:message AS jsonb))
    ON CONFLICT (message_id) DO UPDATE
        SET "state" = 'queued',
            message = EXCLUDED.message,
            queue_name = EXCLUDED.queue_name
    RETURNING queue_name, message
)
SELECT pg_notify(
    'dramatiq.' || queue_name || '.enqueue',
    CASE WHEN octet_length(message::text) >= 8000
        THEN jsonb_build_object('message_id', CAST(:message_id AS text))::text
        ELSE message::text
    END)
FROM enqueued;

-- name: try_maintenance_lock
-- Take the advisory lock of one maintenance job for this transaction; false if held.
SELECT pg_try_advisory_xact_lock(:key);

-- name: purge_finished_messages
-- Delete up to :batch done or rejected queue rows last changed before :cutoff; returns
-- how many. mtime holds UTC wall-clock time (dramatiq-pg's default), hence the AT TIME ZONE.
WITH doomed AS (
    SELECT message_id
    FROM dramatiq.queue
    WHERE "state" IN ('done', 'rejected')
      AND mtime < (CAST(:cutoff AS timestamptz) AT TIME ZONE 'UTC')
    ORDER BY mtime
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
DELETE FROM dramatiq.queue q
USING doomed
WHERE q.message_id = doomed.message_id;

-- name: queue_counts
-- Messages per queue and state.
SELECT queue_name, "state"::text AS state, count(*) AS n
FROM dramatiq.queue
GROUP BY queue_name, "state"
ORDER BY queue_name, "state";

-- name: notify_queue
-- Wake the consumers of one queue (sent once per batch, delivered at commit).
SELECT pg_notify(:channel, :payload);

-- name: claim_messages
-- Claim up to :limit queued messages of :queue_name, skipping rows another consumer is
-- claiming, oldest first; on delay queues only those due before :due_before_ms. As a
-- hot-path prepared statement (no seq scan, bitmap scan or sort) the inner scan walks
-- the (state, mtime) index and stops after :limit rows, and the outer UPDATE finds the
-- claimed rows by primary key. A claim lost in a crash only returns its messages to the
-- queue: it commits asynchronously.
UPDATE dramatiq.queue
SET "state" = 'consumed', mtime = (now() AT TIME ZONE 'UTC')
WHERE message_id = ANY(ARRAY(
        SELECT message_id
        FROM dramatiq.queue
        WHERE queue_name = :queue_name
          AND "state" = 'queued'
          AND (NOT :check_eta
               OR COALESCE(CAST(message->'options'->>'eta' AS bigint), 0) <= :due_before_ms)
        ORDER BY "state", mtime
        LIMIT :limit
        FOR UPDATE SKIP LOCKED))
RETURNING message_id, message::text, set_config('synchronous_commit', 'off', true);

-- name: ack_messages
-- Mark claimed messages of :queue_name done (a message moved to another queue since,
-- by a retry or a delay, is left alone).
-- An ack lost in a crash means a redelivery, which rhesis actors ignore: commit async.
UPDATE dramatiq.queue
SET "state" = 'done', mtime = (now() AT TIME ZONE 'UTC')
WHERE message_id = ANY(CAST(:ids AS uuid[]))
  AND queue_name = :queue_name
  AND "state" = 'consumed'
RETURNING set_config('synchronous_commit', 'off', true);

-- name: nack_messages
-- Mark claimed messages of :queue_name rejected, storing the message as it failed
-- (its options carry the traceback).
UPDATE dramatiq.queue q
SET "state" = 'rejected', mtime = (now() AT TIME ZONE 'UTC'), message = CAST(u.message AS jsonb)
FROM unnest(CAST(:ids AS uuid[]), CAST(:messages AS text[])) AS u(message_id, message)
WHERE q.message_id = u.message_id
  AND q.queue_name = :queue_name
  AND q."state" = 'consumed';

-- name: requeue_messages
-- Return claimed, unprocessed messages to their queue (worker shutdown) and wake consumers.
WITH requeued AS (
    UPDATE dramatiq.queue
    SET "state" = 'queued', mtime = (now() AT TIME ZONE 'UTC')
    WHERE message_id = ANY(CAST(:ids AS uuid[]))
      AND queue_name = :queue_name
      AND "state" = 'consumed'
    RETURNING 1
)
SELECT pg_notify(:channel, 'requeued') WHERE EXISTS (SELECT 1 FROM requeued);

-- name: reject_poison_messages
-- Reject rows that are not decodable dramatiq messages, keeping the reason in result.
UPDATE dramatiq.queue q
SET "state" = 'rejected', mtime = (now() AT TIME ZONE 'UTC'),
    result = jsonb_build_object('poison', u.reason)
FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS u(message_id, reason)
WHERE q.message_id = u.message_id;

-- name: set_tenant
-- Expose the tenant to SQL for this transaction; read it with current_setting(…, true).
SELECT set_config('app.current_organization', :organization_id, true),
       set_config('app.current_user', :user_id, true);

-- name: insert_run
-- Create a run in status QUEUED.
INSERT INTO rhesis.test_runs (id, organization_id, user_id, name, executor, options, total)
VALUES (:id, :organization_id, :user_id, :name, CAST(:executor AS jsonb),
        CAST(:options AS jsonb), :total);

-- name: load_member
-- What a member needs to execute: its test, its run's executor and state.
SELECT r.status, r.test, u.executor, u.status AS run_status, u.cancel_requested
FROM rhesis.test_results r
JOIN rhesis.test_runs u ON u.id = r.run_id
WHERE r.run_id = :run_id AND r.test_id = :test_id;

-- name: mark_run_started
-- A run's first member started: QUEUED becomes IN_PROGRESS (once).
UPDATE rhesis.test_runs
SET status = 'IN_PROGRESS', started_at = COALESCE(started_at, now())
WHERE id = :run_id AND status = 'QUEUED';

-- name: lock_runs
-- Lock the rows of the runs a batch of outcomes touches, in id order (no deadlocks
-- between two writers whose batches share runs).
SELECT id
FROM rhesis.test_runs
WHERE id = ANY(CAST(:run_ids AS uuid[]))
ORDER BY id
FOR UPDATE;

-- name: record_outcomes
-- Store a batch of terminal outcomes, each only if its test has none yet; add them to
-- their runs' counters; for each run whose last outcome this is, enqueue its
-- collect_results message (id fixed per run, so never twice) and wake the callback
-- queue; mark the members' messages done. One statement: one transaction. Returns one
-- row per input (ord), saying whether it was recorded and if it fired its run's callback.
WITH input AS (
    SELECT *
    FROM unnest(
        CAST(:ords AS integer[]), CAST(:run_ids AS uuid[]), CAST(:test_ids AS text[]),
        CAST(:statuses AS text[]), CAST(:outputs AS jsonb[]), CAST(:metrics AS jsonb[]),
        CAST(:errors AS text[]), CAST(:durations AS double precision[]),
        CAST(:workers AS text[]), CAST(:attempts AS integer[]),
        CAST(:started AS timestamptz[]), CAST(:ack_ids AS uuid[]), CAST(:ack_queues AS text[])
    ) AS i(ord, run_id, test_id, status, output, metrics, error, duration_ms, worker,
           attempts, started_at, ack_id, ack_queue)
), result AS (
    UPDATE rhesis.test_results r
    SET status = i.status,
        output = i.output,
        metrics = i.metrics,
        error = i.error,
        duration_ms = i.duration_ms,
        worker = COALESCE(i.worker, r.worker),
        attempts = COALESCE(i.attempts, r.attempts),
        started_at = COALESCE(i.started_at, r.started_at),
        finished_at = clock_timestamp()
    FROM input i
    WHERE r.run_id = i.run_id AND r.test_id = i.test_id AND r.status = 'queued'
    RETURNING r.run_id, r.test_id, r.status
), deltas AS (
    SELECT run_id,
           count(*) AS n,
           count(*) FILTER (WHERE status = 'passed') AS passed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'error') AS errored,
           count(*) FILTER (WHERE status = 'lost') AS lost,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled
    FROM result
    GROUP BY run_id
), callbacks AS (
    SELECT *
    FROM unnest(CAST(:cb_run_ids AS uuid[]), CAST(:cb_ids AS uuid[]),
                CAST(:cb_queues AS text[]), CAST(:cb_messages AS jsonb[]))
        AS c(run_id, message_id, queue_name, message)
), run AS (
    UPDATE rhesis.test_runs u
    SET done = u.done + d.n,
        passed = u.passed + d.passed,
        failed = u.failed + d.failed,
        errored = u.errored + d.errored,
        lost = u.lost + d.lost,
        cancelled = u.cancelled + d.cancelled,
        status = CASE WHEN u.status = 'QUEUED' THEN 'IN_PROGRESS' ELSE u.status END,
        started_at = COALESCE(u.started_at, now()),
        last_progress_at = clock_timestamp(),
        callback_message_id = CASE WHEN u.done + d.n = u.total THEN c.message_id
                                   ELSE u.callback_message_id END,
        callback_enqueued_at = CASE WHEN u.done + d.n = u.total THEN clock_timestamp()
                                    ELSE u.callback_enqueued_at END
    FROM deltas d
    JOIN callbacks c ON c.run_id = d.run_id
    WHERE u.id = d.run_id
    RETURNING u.id, u.done, u.total
), enqueued AS (
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
    SELECT c.queue_name, c.message_id, 'queued', c.message
    FROM run
    JOIN callbacks c ON c.run_id = run.id
    WHERE run.done = run.total
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, queue_name
), acked AS (
    UPDATE dramatiq.queue q
    SET "state" = 'done', mtime = (now() AT TIME ZONE 'UTC')
    FROM input i
    WHERE q.message_id = i.ack_id AND q.queue_name = i.ack_queue AND q."state" = 'consumed'
    RETURNING q.message_id
), woken AS (
    SELECT pg_notify('dramatiq.' || q.queue_name || '.enqueue', 'callback')
    FROM (SELECT DISTINCT queue_name FROM enqueued) AS q
)
SELECT i.ord,
       (res.test_id IS NOT NULL) AS recorded,
       run.done,
       run.total,
       (cb.message_id IS NOT NULL AND res.test_id IS NOT NULL) AS callback_enqueued,
       EXISTS (SELECT 1 FROM acked a WHERE a.message_id = i.ack_id) AS acked,
       (SELECT count(*) FROM woken) AS notified,
       -- Commit without waiting for the WAL flush: a run's row is locked until commit,
       -- so a synchronous flush would serialise its members on the disk. Safe: the
       -- members' acks are in this transaction, so a commit lost in a crash loses them
       -- too and the members run again; any later synchronous commit flushes this one.
       set_config('synchronous_commit', 'off', true) AS async_commit
FROM input i
LEFT JOIN result res ON res.run_id = i.run_id AND res.test_id = i.test_id
LEFT JOIN run ON run.id = i.run_id
LEFT JOIN enqueued cb ON cb.message_id = (SELECT c.message_id FROM callbacks c
                                           WHERE c.run_id = i.run_id)
ORDER BY i.ord;

-- name: lock_run
-- Lock a run's row for the completion callback.
SELECT id, name, status, total, organization_id, user_id, cancel_requested
FROM rhesis.test_runs
WHERE id = :run_id
FOR UPDATE;

-- name: count_results
-- Results of one run by status (done once, by the completion callback).
SELECT status, count(*) FROM rhesis.test_results WHERE run_id = :run_id GROUP BY status;

-- name: finish_run
-- Set a run's final status and counts from its results; returns its duration and the
-- callback latency (from the last outcome's commit to now).
UPDATE rhesis.test_runs
SET status = :status,
    passed = :passed, failed = :failed, errored = :errored, lost = :lost,
    cancelled = :cancelled,
    done = :passed + :failed + :errored + :lost + :cancelled,
    finished_at = clock_timestamp(),
    collected_count = collected_count + 1,
    summary = jsonb_build_object(
        'passed', :passed, 'failed', :failed, 'errored', :errored, 'lost', :lost,
        'cancelled', :cancelled, 'total', total,
        'duration_s', EXTRACT(EPOCH FROM clock_timestamp() - COALESCE(started_at, created_at)),
        'callback_latency_ms',
            EXTRACT(EPOCH FROM clock_timestamp() - last_progress_at) * 1000)
WHERE id = :run_id AND status IN ('QUEUED', 'IN_PROGRESS')
RETURNING CAST(summary->>'duration_s' AS double precision) AS duration_s,
          CAST(summary->>'callback_latency_ms' AS double precision) AS callback_latency_ms;

-- name: run_progress
-- A run's counters: progress without counting result rows.
SELECT id, status, total, done, passed, failed, errored, lost, cancelled
FROM rhesis.test_runs
WHERE id = :run_id;

-- name: get_run
-- One run, every column a reader needs.
SELECT id, name, status, organization_id, user_id, total, done, passed, failed, errored,
       lost, cancelled, created_at, started_at, finished_at, collected_count, summary
FROM rhesis.test_runs
WHERE id = :run_id;

-- name: get_results
-- The results of one run in suite order.
SELECT test_id, position, status, output, metrics, error, attempts, duration_ms, worker,
       started_at, finished_at
FROM rhesis.test_results
WHERE run_id = :run_id
ORDER BY position;

-- name: run_cancel_requested
-- Whether a run was revoked (false for an unknown run).
SELECT COALESCE((SELECT cancel_requested FROM rhesis.test_runs WHERE id = :run_id), false);

-- name: rl_lock
-- Serialise operations on one rate-limit key until the end of the transaction.
SELECT pg_advisory_xact_lock(hashtextextended('rhesis.rate_limits:' || :key, 0));

-- name: rl_get
-- The value of a rate-limit key, or nothing if it is absent or expired.
SELECT value FROM rhesis.rate_limits WHERE key = :key AND expires_at > clock_timestamp();

-- name: rl_put
-- Set a rate-limit key's value and expiry (now + :ttl).
INSERT INTO rhesis.rate_limits (key, value, expires_at)
VALUES (:key, :value, clock_timestamp() + :ttl)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at;

-- name: purge_expired_rate_limits
-- Delete up to :batch rate-limit keys that expired before :cutoff; returns how many.
WITH doomed AS (
    SELECT key FROM rhesis.rate_limits
    WHERE expires_at < :cutoff
    ORDER BY expires_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
DELETE FROM rhesis.rate_limits r USING doomed WHERE r.key = doomed.key;

-- name: recent_runs
-- The newest runs with their counters.
SELECT id AS run_id, name, status, organization_id, user_id, total, done, passed, failed,
       errored + lost AS errored, cancelled, created_at, finished_at
FROM rhesis.test_runs
ORDER BY created_at DESC
LIMIT :limit;
