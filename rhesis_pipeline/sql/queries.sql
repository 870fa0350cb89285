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
