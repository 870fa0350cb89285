-- Runtime SQL of rhesis-pipeline, loaded once into a dict by
-- rhesis_pipeline/storage/queries.py. Sections (`-- ===== Title =====` and a line on
-- what they hold) follow a test's life: submission, claim, execution, outcome and
-- completion, then the workers, maintenance and what operators read. Each query starts
-- with `-- name: NAME` and a line saying what it does; parameters use SQLAlchemy's
-- :name style ({name}: an identifier or fragment composed in by the caller).


-- ===== Schema and server =====
-- The database and its schema version (the embedded server's first start, migrate, the
-- workers' schema check).

-- name: database_exists
-- Whether database :name exists on the server (the embedded server's first start).
SELECT 1 FROM pg_database WHERE datname = :name;

-- name: create_database
-- Create database {name} (an identifier, quoted by the caller).
CREATE DATABASE {name};

-- name: schema_version_table_exists
-- Whether the pipeline's Alembic version table exists (false: never migrated).
SELECT to_regclass('rhesis.alembic_version') IS NOT NULL;

-- name: schema_version
-- The Alembic revision the database is at.
SELECT version_num FROM rhesis.alembic_version;

-- name: ping
-- Whether the server answers a query at all (the dashboard's /readyz).
SELECT 1;


-- ===== Sessions and statements =====
-- What rhesis_pipeline.storage runs around the other queries: the tenant of a
-- transaction, prepared statements, COPY, LISTEN, synchronous commit.

-- name: set_tenant
-- Expose the tenant to SQL for this transaction; read it with current_setting(…, true).
-- As rhesis_tenant (become_tenant), it decides which rows row-level security shows.
SELECT set_config('app.current_organization', :organization_id, true),
       set_config('app.current_user', :user_id, true);

-- name: become_tenant
-- Act as rhesis_tenant until the end of this transaction: row-level security applies,
-- keyed on app.current_organization (set_tenant).
SET LOCAL ROLE rhesis_tenant;

-- name: hot_path_settings
-- Planner settings of the hot path's prepared statements (rhesis_pipeline.storage.statements
-- .execute_prepared), sent with each EXECUTE and local to its transaction: one generic
-- plan, made with sequential scans, bitmap scans and sorts off so that it walks an index
-- at any table size; JIT off because a disabled node type adds 1e10 to a plan's cost,
-- far above jit_above_cost (every execution paid ~1 s of JIT compilation).
SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL jit = off;

-- name: prepare_statement
-- Prepare {statement} (a named query, parameters numbered) as {name} for this session.
PREPARE {name} AS {statement};

-- name: execute_statement
-- Run prepared statement {name} with {args} (placeholders).
EXECUTE {name} ({args});

-- name: copy_rows
-- Bulk-load {columns} of {table} from the client (tab-separated text).
COPY {table} ({columns}) FROM STDIN;

-- name: listen
-- Subscribe this session to NOTIFY channel {channel} (an identifier, quoted by
-- statements.listen).
LISTEN {channel};

-- name: commit_synchronously
-- Undo the hot path's asynchronous commit for the rest of this transaction.
SELECT set_config('synchronous_commit', 'on', true);


-- ===== Submission =====
-- A run, its results and its member messages, stored and enqueued in one transaction
-- (rhesis_pipeline.runs.submit.launch_test_run); any message's enqueue.

-- name: launch_context
-- Whether row-level security applies to this session on the tables a launch writes (a
-- session acting as rhesis_tenant: COPY FROM is then refused, the launch INSERTs
-- instead), and the organization the session acts for (NULL: unset or empty).
SELECT row_security_active('rhesis.test_runs') OR row_security_active('rhesis.test_results')
           OR row_security_active('dramatiq.queue') AS row_security,
       NULLIF(current_setting('app.current_organization', true), '') AS organization_id;

-- name: insert_run
-- Create a run in status QUEUED (:trace_context: its W3C trace context, or NULL).
INSERT INTO rhesis.test_runs (id, organization_id, user_id, name, executor, options, total,
                              trace_context)
VALUES (:id, :organization_id, :user_id, :name, CAST(:executor AS jsonb),
        CAST(:options AS jsonb), :total, CAST(:trace_context AS jsonb));

-- name: insert_results
-- Create result rows (status queued) of run :run_id, one per element of :test_ids, at
-- positions :first, :first + 1, … in that order: a launch under row-level security (no
-- COPY), in chunks. Message ids come from the column's default.
INSERT INTO rhesis.test_results (run_id, test_id, position, test)
SELECT CAST(:run_id AS uuid), t.test_id, :first + CAST(t.ord AS integer) - 1,
       CAST(t.test AS jsonb)
FROM unnest(CAST(:test_ids AS text[]), CAST(:tests AS text[]))
    WITH ORDINALITY AS t(test_id, test, ord);

-- name: set_run_total
-- A run's number of tests, once a launch has read them all (inserted with 1 before).
UPDATE rhesis.test_runs SET total = :total WHERE id = :run_id;

-- name: enqueue_run_members
-- Store the member messages of run :run_id as queued: one execute_single_test message per
-- result row, built here from the row (its message id, the run and test ids) and
-- :options, so a launch sends each test once (its result row) and nothing per message.
-- The same JSON that dramatiq's Message.encode writes. Woken by notify_queue.
INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
SELECT :queue_name, r.message_id, CAST('queued' AS dramatiq.state),
       jsonb_build_object(
           'queue_name', CAST(:queue_name AS text),
           'actor_name', CAST(:actor_name AS text),
           'args', jsonb_build_array(CAST(r.run_id AS text), r.test_id),
           'kwargs', CAST('{}' AS jsonb),
           'options', CAST(:options AS jsonb),
           'message_id', CAST(r.message_id AS text),
           'message_timestamp', CAST(:timestamp_ms AS bigint))
FROM rhesis.test_results r
WHERE r.run_id = CAST(:run_id AS uuid);

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

-- name: notify_queue
-- Wake the consumers of one queue (sent once per batch, delivered at commit).
SELECT pg_notify(:channel, :payload);

-- name: run_tenant
-- The tenant (organization and user) of one run.
SELECT organization_id, user_id FROM rhesis.test_runs WHERE id = :run_id;

-- name: run_trace
-- What the callback of a traced run needs for the run's root span: the trace context
-- stored at launch (NULL if none), when the run was launched, and its name.
SELECT trace_context, created_at, name FROM rhesis.test_runs WHERE id = :run_id;


-- ===== Re-runs =====
-- A new run of a finished run's tests (rhesis_pipeline.runs.rerun).

-- name: rerun_source
-- What a re-run of run :run_id needs: its executor, options, tenant and name.
SELECT id, name, executor, options, organization_id, user_id
FROM rhesis.test_runs
WHERE id = :run_id;

-- name: rerun_tests
-- The stored definitions of run :run_id's tests to run again, in suite order: those
-- with one of :statuses.
SELECT test
FROM rhesis.test_results
WHERE run_id = :run_id AND status = ANY(:statuses)
ORDER BY position;

-- name: mark_rerun
-- Record that run :run_id re-runs run :rerun_of.
UPDATE rhesis.test_runs SET rerun_of = :rerun_of WHERE id = :run_id;


-- ===== Claims =====
-- A consumer takes messages of its queue, each under a claim token
-- (rhesis_pipeline.worker.consumer).

-- name: claim_messages
-- Claim up to :limit queued messages of :queue_name, skipping rows another consumer is
-- claiming, oldest first, and those deferred to a later time (mtime in the future, see
-- defer_member); on delay queues only those due before :due_before_ms. Each
-- claim is recorded for worker :worker_id with a fresh token (fencing: a result reported
-- under a superseded token is refused). As a hot-path prepared statement (no seq scan,
-- bitmap scan or sort) the inner scan walks queue_claim (this queue's waiting messages,
-- oldest first; migration 0007) and stops after :limit rows. A claim lost in a crash only returns its messages to the queue: it
-- commits asynchronously.
WITH claimed AS (
    UPDATE dramatiq.queue
    SET "state" = 'consumed', mtime = (now() AT TIME ZONE 'UTC')
    WHERE message_id = ANY(ARRAY(
            SELECT message_id
            FROM dramatiq.queue
            WHERE queue_name = :queue_name
              AND "state" = 'queued'
              AND mtime <= (now() AT TIME ZONE 'UTC')
              AND (NOT :check_eta
                   OR COALESCE(CAST(message->'options'->>'eta' AS bigint), 0) <= :due_before_ms)
            ORDER BY mtime
            LIMIT :limit
            FOR UPDATE SKIP LOCKED))
    RETURNING message_id, message
), recorded AS (
    INSERT INTO rhesis.claims (message_id, worker_id, token, queue_name, claimed_at)
    SELECT message_id, CAST(:worker_id AS uuid), gen_random_uuid(), :queue_name, now()
    FROM claimed
    WHERE :worker_id IS NOT NULL
    ON CONFLICT (message_id) DO UPDATE
        SET worker_id = EXCLUDED.worker_id, token = EXCLUDED.token,
            queue_name = EXCLUDED.queue_name, claimed_at = EXCLUDED.claimed_at,
            started_at = NULL
    RETURNING message_id, token
)
SELECT c.message_id, c.message::text, r.token, set_config('synchronous_commit', 'off', true)
FROM claimed c
LEFT JOIN recorded r ON r.message_id = c.message_id;

-- name: claim_fair_messages
-- Claim up to :limit queued messages of :queue_name fairly across organizations (a
-- message's organization: options.tenant.organization_id, '' for none): the organizations
-- with waiting work are taken in rotating order starting after :after_org (at most
-- :limit of them, one index probe each, on queue_waiting_by_organization), each offers
-- its oldest messages, and the claim takes them round-robin — every organization's 1st,
-- then every one's 2nd, … — so a small run of one organization is not held behind
-- another's backlog; oldest first within an organization. With :cap (RHESIS_TENANT_MAX_
-- RUNNING) an organization is offered at most :cap minus what it already has claimed
-- (the caller serialises capped claims, see consumer.py). Claims are recorded as in
-- claim_messages. Returns each message's organization and its place in the rotation, so
-- the next claim starts after the last organization served.
WITH RECURSIVE ring(org, n, first) AS (
    SELECT o.org, 1, o.org
    FROM (SELECT COALESCE(
              (SELECT COALESCE(message->'options'->'tenant'->>'organization_id', '')
               FROM dramatiq.queue
               WHERE queue_name = :queue_name AND "state" = 'queued'
                 AND COALESCE(message->'options'->'tenant'->>'organization_id', '')
                     > :after_org
               ORDER BY 1 LIMIT 1),
              (SELECT COALESCE(message->'options'->'tenant'->>'organization_id', '')
               FROM dramatiq.queue
               WHERE queue_name = :queue_name AND "state" = 'queued'
               ORDER BY 1 LIMIT 1)) AS org) o
    WHERE o.org IS NOT NULL
    UNION ALL
    SELECT nxt.org, ring.n + 1, ring.first
    FROM ring
    CROSS JOIN LATERAL (
        SELECT COALESCE(
            (SELECT COALESCE(message->'options'->'tenant'->>'organization_id', '')
             FROM dramatiq.queue
             WHERE queue_name = :queue_name AND "state" = 'queued'
               AND COALESCE(message->'options'->'tenant'->>'organization_id', '') > ring.org
             ORDER BY 1 LIMIT 1),
            (SELECT COALESCE(message->'options'->'tenant'->>'organization_id', '')
             FROM dramatiq.queue
             WHERE queue_name = :queue_name AND "state" = 'queued'
             ORDER BY 1 LIMIT 1)) AS org
    ) nxt
    WHERE ring.n < :limit AND nxt.org IS NOT NULL AND nxt.org <> ring.first
), offered AS (
    SELECT ring.n, ring.org, c.message_id, c.mtime
    FROM ring
    CROSS JOIN LATERAL (
        SELECT q.message_id, q.mtime
        FROM dramatiq.queue q
        WHERE q.queue_name = :queue_name AND q."state" = 'queued'
          AND COALESCE(q.message->'options'->'tenant'->>'organization_id', '') = ring.org
          AND q.mtime <= (now() AT TIME ZONE 'UTC')
        ORDER BY q.mtime
        LIMIT CASE WHEN CAST(:cap AS integer) IS NULL THEN :limit
                   ELSE GREATEST(0, LEAST(
                       :limit,
                       CAST(:cap AS integer) - (
                           SELECT count(*) FROM dramatiq.queue r
                           WHERE r.queue_name = :queue_name AND r."state" = 'consumed'
                             AND COALESCE(r.message->'options'->'tenant'->>'organization_id',
                                          '') = ring.org)))
              END
        FOR UPDATE SKIP LOCKED
    ) c
), chosen AS (
    SELECT message_id, n, org
    FROM (SELECT message_id, n, org,
                 row_number() OVER (PARTITION BY n ORDER BY mtime) AS turn
          FROM offered) o
    ORDER BY turn, n
    LIMIT :limit
), claimed AS (
    UPDATE dramatiq.queue q
    SET "state" = 'consumed', mtime = (now() AT TIME ZONE 'UTC')
    FROM chosen
    WHERE q.message_id = chosen.message_id
    RETURNING q.message_id, q.message, chosen.n, chosen.org
), recorded AS (
    INSERT INTO rhesis.claims (message_id, worker_id, token, queue_name, claimed_at)
    SELECT message_id, CAST(:worker_id AS uuid), gen_random_uuid(), :queue_name, now()
    FROM claimed
    WHERE :worker_id IS NOT NULL
    ON CONFLICT (message_id) DO UPDATE
        SET worker_id = EXCLUDED.worker_id, token = EXCLUDED.token,
            queue_name = EXCLUDED.queue_name, claimed_at = EXCLUDED.claimed_at,
            started_at = NULL
    RETURNING message_id, token
)
SELECT c.message_id, c.message::text, r.token, c.n, c.org,
       set_config('synchronous_commit', 'off', true)
FROM claimed c
LEFT JOIN recorded r ON r.message_id = c.message_id;

-- name: claim_lock
-- Serialise capped claims of one queue for this transaction (RHESIS_TENANT_MAX_RUNNING):
-- the claim that follows, in a new snapshot, sees every claim committed before it.
SELECT pg_advisory_xact_lock(CAST(:lock_class AS integer), hashtext(:queue_name));

-- name: load_claimed
-- The messages this worker (:worker_id) claimed on :queue_name in this transaction (run
-- right after claim_messages or claim_fair_messages, in the same multi-statement round
-- trip: their claims have claimed_at = now(), the transaction's start), each with its
-- organization and, for a member, what the worker needs to run it: its test's status and
-- definition and its run's executor, state and cancel flag (NULL for other actors and
-- for args that are not (run uuid, test id)). Runs still QUEUED become IN_PROGRESS.
-- Ordered round-robin by organization, oldest first within one, as the fair claim took
-- them.
WITH mine AS (
    SELECT c.message_id, c.token, q.message, q.mtime,
           COALESCE(q.message->'options'->'tenant'->>'organization_id', '') AS org,
           CASE WHEN q.message->>'actor_name' = 'execute_single_test'
                     AND q.message->'args'->>0
                         ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN CAST(q.message->'args'->>0 AS uuid) END AS run_id,
           q.message->'args'->>1 AS test_id
    FROM rhesis.claims c
    JOIN dramatiq.queue q ON q.message_id = c.message_id
    WHERE c.worker_id = CAST(:worker_id AS uuid) AND c.queue_name = :queue_name
      AND c.claimed_at = now()
), started AS (
    UPDATE rhesis.test_runs u
    SET status = 'IN_PROGRESS', started_at = COALESCE(u.started_at, now())
    WHERE u.id IN (SELECT run_id FROM mine) AND u.status = 'QUEUED'
    RETURNING u.id
)
SELECT m.message_id, m.message::text, m.token, m.org,
       r.status, r.test, u.executor,
       CASE WHEN u.status = 'QUEUED' THEN 'IN_PROGRESS' ELSE u.status END AS run_status,
       u.cancel_requested,
       (SELECT count(*) FROM started) AS runs_started
FROM mine m
LEFT JOIN rhesis.test_results r ON r.run_id = m.run_id AND r.test_id = m.test_id
LEFT JOIN rhesis.test_runs u ON u.id = r.run_id
ORDER BY row_number() OVER (PARTITION BY m.org ORDER BY m.mtime), m.org;

-- name: reject_poison_messages
-- Reject rows that are not decodable dramatiq messages, keeping the reason in result.
UPDATE dramatiq.queue q
SET "state" = 'rejected', mtime = (now() AT TIME ZONE 'UTC'),
    result = jsonb_build_object('poison', u.reason)
FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS u(message_id, reason)
WHERE q.message_id = u.message_id;


-- ===== Execution =====
-- A member starts: its test loaded, its claim marked started, revocation checked.

-- name: load_member
-- What a member needs to execute: its test, its run's executor and state. Marks its claim
-- (:message_id under :token) started, in the same round trip: the rescuer counts a lost
-- attempt only for a member whose worker died while running it. Committed asynchronously:
-- a mark lost in a server crash only means that attempt is not counted.
WITH started AS (
    UPDATE rhesis.claims
    SET started_at = clock_timestamp()
    WHERE message_id = CAST(:message_id AS uuid) AND token = CAST(:token AS uuid)
    RETURNING message_id
)
SELECT r.status, r.test, u.executor, u.status AS run_status, u.cancel_requested,
       (SELECT count(*) FROM started) AS marked,
       set_config('synchronous_commit', 'off', true) AS async_commit
FROM rhesis.test_results r
JOIN rhesis.test_runs u ON u.id = r.run_id
WHERE r.run_id = :run_id AND r.test_id = :test_id;

-- name: mark_started
-- Mark claims started (members whose test was preloaded with their claim; written in
-- batches by the outcome writer): the rescuer then counts a lost attempt if the worker
-- dies. A claim superseded meanwhile (another token) is left alone. Committed
-- asynchronously, like load_member's mark.
WITH input AS (
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]),
                         CAST(:started AS timestamptz[])) AS u(message_id, token, started_at)
), marked AS (
    UPDATE rhesis.claims c
    SET started_at = i.started_at
    FROM input i
    WHERE c.message_id = i.message_id AND c.token = i.token AND c.started_at IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM marked), set_config('synchronous_commit', 'off', true);

-- name: mark_run_started
-- A run's first member started: QUEUED becomes IN_PROGRESS (once).
UPDATE rhesis.test_runs
SET status = 'IN_PROGRESS', started_at = COALESCE(started_at, now())
WHERE id = :run_id AND status = 'QUEUED';

-- name: run_cancel_requested
-- Whether a run was revoked (false for an unknown run).
SELECT COALESCE((SELECT cancel_requested FROM rhesis.test_runs WHERE id = :run_id), false);

-- name: revoked_among
-- Which of the run ids :ids were revoked (members still executing them are interrupted).
SELECT id FROM rhesis.test_runs WHERE id = ANY(CAST(:ids AS uuid[])) AND cancel_requested;


-- ===== Outcomes and completion =====
-- A member's outcome stored and counted once; the last one enqueues the run's callback,
-- which sets the run's status (rhesis_pipeline.runs.outcomes, rhesis_pipeline.runs.complete).

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
-- collect_results message (id fixed per run, so never twice; with the run's tenant) and wake the callback
-- queue; delete the members' messages (acked). One statement: one transaction. Returns one
-- row per input (ord), saying whether it was recorded and if it fired its run's callback.
WITH input AS (
    SELECT *
    FROM unnest(
        CAST(:ords AS integer[]), CAST(:run_ids AS uuid[]), CAST(:test_ids AS text[]),
        CAST(:statuses AS text[]), CAST(:outputs AS jsonb[]), CAST(:metrics AS jsonb[]),
        CAST(:errors AS text[]), CAST(:durations AS double precision[]),
        CAST(:workers AS text[]), CAST(:attempts AS integer[]),
        CAST(:started AS timestamptz[]), CAST(:ack_ids AS uuid[]), CAST(:ack_queues AS text[]),
        CAST(:message_ids AS uuid[]), CAST(:tokens AS uuid[])
    ) AS i(ord, run_id, test_id, status, output, metrics, error, duration_ms, worker,
           attempts, started_at, ack_id, ack_queue, message_id, token)
), fenced AS (
    -- Outcomes reported under a claim token that is no longer the message's (the
    -- message was rescued from this worker and claimed again) are refused.
    SELECT i.*
    FROM input i
    WHERE i.token IS NULL
       OR EXISTS (SELECT 1 FROM rhesis.claims c
                  WHERE c.message_id = i.message_id AND c.token = i.token)
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
    FROM fenced i
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
    RETURNING u.id, u.done, u.total, u.organization_id, u.user_id
), enqueued AS (
    -- The callback carries its run's tenant (from the run's row) to its worker.
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
    SELECT c.queue_name, c.message_id, 'queued',
           CASE WHEN run.organization_id IS NULL AND run.user_id IS NULL THEN c.message
                ELSE jsonb_set(c.message, '{options,tenant}',
                               jsonb_build_object('organization_id', run.organization_id,
                                                  'user_id', run.user_id))
           END
    FROM run
    JOIN callbacks c ON c.run_id = run.id
    WHERE run.done = run.total
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, queue_name
), acked AS (
    -- A member's message is deleted with its outcome, not marked done: the result row
    -- is the member's record, and one delete logs a fraction of an update to 'done'
    -- followed by the retention purge's delete.
    DELETE FROM dramatiq.queue q
    USING fenced i
    WHERE q.message_id = i.ack_id AND q.queue_name = i.ack_queue AND q."state" = 'consumed'
    RETURNING q.message_id
), forgotten AS (
    DELETE FROM rhesis.claims c USING acked a WHERE c.message_id = a.message_id RETURNING 1
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
       EXISTS (SELECT 1 FROM fenced f WHERE f.ord = i.ord) AS accepted,
       (SELECT count(*) FROM woken) AS notified,
       (SELECT count(*) FROM forgotten) AS claims_forgotten,
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
-- Set a run's final status and counts from its results; returns the run's row (the
-- columns of get_run), its duration and the callback latency (from the last outcome's
-- commit to now).
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
RETURNING id, name, status, organization_id, user_id, total, done, passed, failed, errored,
          lost, cancelled, cancel_requested, created_at, started_at, finished_at,
          last_progress_at, collected_count, summary,
          CAST(summary->>'duration_s' AS double precision) AS duration_s,
          CAST(summary->>'callback_latency_ms' AS double precision) AS callback_latency_ms;

-- name: observe_finished_run
-- Add a finished run's test durations, its callback latency and its metrics' scores to the
-- histograms kept in rhesis.metric_totals (labels: the bucket's upper bound in seconds;
-- _count and _sum with empty labels; for scores, the metric's name, a tab, then the
-- bound, and the name alone for _count and _sum): cumulative bucket counts, as Prometheus
-- histograms are.
WITH durations AS (
    SELECT duration_ms / 1000.0 AS s
    FROM rhesis.test_results
    WHERE run_id = :run_id AND duration_ms IS NOT NULL
), scores AS (
    SELECT left(COALESCE(m.value->>'name', m.value->>'type', ''), 100) AS name,
           CAST(m.value->>'score' AS double precision) AS s
    FROM rhesis.test_results r
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(r.metrics) = 'array' THEN r.metrics ELSE '[]'::jsonb END) AS m
    WHERE r.run_id = :run_id AND jsonb_typeof(m.value) = 'object'
      AND jsonb_typeof(m.value->'score') = 'number'
), observed AS (
    SELECT 'test_duration_seconds_bucket' AS metric, CAST(b.le AS text) AS labels,
           (SELECT count(*) FROM durations d WHERE d.s <= b.le) AS n
    FROM unnest(CAST(:duration_buckets AS double precision[])) AS b(le)
    UNION ALL
    SELECT 'test_duration_seconds_count', '', (SELECT count(*) FROM durations)
    UNION ALL
    SELECT 'test_duration_seconds_sum', '', (SELECT COALESCE(sum(s), 0) FROM durations)
    UNION ALL
    SELECT 'callback_latency_seconds_bucket', CAST(b.le AS text),
           CASE WHEN :latency_s <= b.le THEN 1 ELSE 0 END
    FROM unnest(CAST(:latency_buckets AS double precision[])) AS b(le)
    WHERE CAST(:latency_s AS double precision) IS NOT NULL
    UNION ALL
    SELECT 'callback_latency_seconds_count', '', 1
    WHERE CAST(:latency_s AS double precision) IS NOT NULL
    UNION ALL
    SELECT 'callback_latency_seconds_sum', '', CAST(:latency_s AS double precision)
    WHERE CAST(:latency_s AS double precision) IS NOT NULL
    UNION ALL
    SELECT 'metric_score_bucket', sc.name || chr(9) || CAST(b.le AS text),
           count(*) FILTER (WHERE sc.s <= b.le)
    FROM scores sc CROSS JOIN unnest(CAST(:score_buckets AS double precision[])) AS b(le)
    GROUP BY sc.name, b.le
    UNION ALL
    SELECT 'metric_score_count', name, count(*) FROM scores GROUP BY name
    UNION ALL
    SELECT 'metric_score_sum', name, sum(s) FROM scores GROUP BY name
)
INSERT INTO rhesis.metric_totals (metric, labels, value)
SELECT metric, labels, n FROM observed
ON CONFLICT (metric, labels) DO UPDATE SET value = rhesis.metric_totals.value + EXCLUDED.value;


-- ===== Acks and requeues =====
-- A consumer settles what it claimed: done, rejected, or back to its queue.

-- name: ack_messages
-- Mark claimed messages of :queue_name done, and forget their claims. Left alone: a
-- message moved to another queue since (a retry, a delay), and one whose claim token is
-- not :tokens' (it was rescued and claimed again: this ack comes from a superseded
-- holder). An ack lost in a crash means a redelivery, which rhesis actors ignore: commit
-- async.
WITH input AS (
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[])) AS u(message_id, token)
), acked AS (
    UPDATE dramatiq.queue q
    SET "state" = 'done', mtime = (now() AT TIME ZONE 'UTC')
    FROM input i
    WHERE q.message_id = i.message_id
      AND q.queue_name = :queue_name
      AND q."state" = 'consumed'
      AND (i.token IS NULL OR EXISTS (SELECT 1 FROM rhesis.claims c
                                      WHERE c.message_id = i.message_id AND c.token = i.token))
    RETURNING q.message_id
), forgotten AS (
    DELETE FROM rhesis.claims c USING acked a WHERE c.message_id = a.message_id RETURNING 1
)
SELECT (SELECT count(*) FROM acked), (SELECT count(*) FROM forgotten),
       set_config('synchronous_commit', 'off', true);

-- name: nack_messages
-- Mark claimed messages of :queue_name rejected, storing the message as it failed (its
-- options carry the traceback), and forget their claims; fenced like ack_messages.
WITH input AS (
    SELECT *
    FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]), CAST(:messages AS text[]))
        AS u(message_id, token, message)
), rejected AS (
    UPDATE dramatiq.queue q
    SET "state" = 'rejected', mtime = (now() AT TIME ZONE 'UTC'),
        message = CAST(i.message AS jsonb)
    FROM input i
    WHERE q.message_id = i.message_id
      AND q.queue_name = :queue_name
      AND q."state" = 'consumed'
      AND (i.token IS NULL OR EXISTS (SELECT 1 FROM rhesis.claims c
                                      WHERE c.message_id = i.message_id AND c.token = i.token))
    RETURNING q.message_id
), forgotten AS (
    DELETE FROM rhesis.claims c USING rejected r WHERE c.message_id = r.message_id RETURNING 1
)
SELECT (SELECT count(*) FROM rejected), (SELECT count(*) FROM forgotten);

-- name: requeue_messages
-- Return claimed, unprocessed messages to their queue (worker shutdown) and wake consumers.
WITH requeued AS (
    UPDATE dramatiq.queue
    SET "state" = 'queued', mtime = (now() AT TIME ZONE 'UTC')
    WHERE message_id = ANY(CAST(:ids AS uuid[]))
      AND queue_name = :queue_name
      AND "state" = 'consumed'
    RETURNING message_id
), forgotten AS (
    DELETE FROM rhesis.claims c USING requeued r WHERE c.message_id = r.message_id RETURNING 1
)
SELECT pg_notify(:channel, 'requeued'), (SELECT count(*) FROM forgotten)
WHERE EXISTS (SELECT 1 FROM requeued);

-- name: release_unheld_claims
-- Return to :queue_name the messages worker :worker_id claimed there but no longer holds
-- in memory (any not in :held: dropped with a lost connection, or released after a
-- database failure), at their original place and without counting an attempt; forget
-- their claims and wake the queue. Returns how many went back.
WITH released AS (
    UPDATE dramatiq.queue q
    SET "state" = 'queued',
        mtime = COALESCE(
            to_timestamp(CAST(q.message->>'message_timestamp' AS bigint) / 1000.0)
                AT TIME ZONE 'UTC',
            now() AT TIME ZONE 'UTC')
    FROM rhesis.claims c
    WHERE c.worker_id = CAST(:worker_id AS uuid)
      AND c.queue_name = :queue_name
      AND NOT (c.message_id = ANY(CAST(:held AS uuid[])))
      AND q.message_id = c.message_id
      AND q.queue_name = :queue_name
      AND q."state" = 'consumed'
    RETURNING q.message_id
), forgotten AS (
    DELETE FROM rhesis.claims c USING released r WHERE c.message_id = r.message_id RETURNING 1
), woken AS (
    SELECT pg_notify(:channel, 'released') WHERE EXISTS (SELECT 1 FROM released)
)
SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM forgotten),
       (SELECT count(*) FROM woken);

-- name: defer_member
-- Put member :message_id back in its queue, uncounted, if it is still claimed under
-- :token: its endpoint's budget is taken, and a worker must not hold a test it cannot
-- start (rhesis_pipeline.worker.inflight). Not claimed again for :delay_s seconds (its mtime is
-- then; claims take only messages whose mtime has come); its deferrals are counted in
-- options.rhesis_deferrals (the next delay doubles); its claim is forgotten. Returns 1
-- if it went back.
WITH deferred AS (
    UPDATE dramatiq.queue q
    SET "state" = 'queued',
        mtime = (now() AT TIME ZONE 'UTC') + make_interval(secs => :delay_s),
        message = jsonb_set(q.message, '{options,rhesis_deferrals}',
                            to_jsonb(COALESCE(CAST(q.message->'options'->>'rhesis_deferrals'
                                                   AS integer), 0) + 1))
    FROM rhesis.claims c
    WHERE q.message_id = CAST(:message_id AS uuid) AND q."state" = 'consumed'
      AND c.message_id = q.message_id AND c.token = CAST(:token AS uuid)
    RETURNING q.message_id
), forgotten AS (
    DELETE FROM rhesis.claims c USING deferred d WHERE c.message_id = d.message_id RETURNING 1
)
SELECT count(*) FROM deferred;


-- ===== Rate and endpoint limits =====
-- Limits shared by every worker on every host: rate-limit keys (dramatiq's rate limiters
-- and barriers) and the adaptive endpoint limits (rhesis_pipeline.worker).

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

-- name: endpoint_exchange
-- A worker process's exchange with the endpoint limits it shares with every other worker
-- (rhesis.endpoint_exchange, migration 0009), per limit key: return :release slots, report
-- :successes and :throttles (429s, pausing the key for :pause_s seconds), ask for :want
-- more slots for :waiting tests; get what the key's concurrency, tokens and pause allow.
-- Also renews this worker's leases (a lease older than :lease_timeout_s does not count).
SELECT key, granted, held, paused_for_s, current_limit, others_waiting
FROM rhesis.endpoint_exchange(
    :worker, CAST(:keys AS text[]), CAST(:max_concurrency AS integer[]),
    CAST(:declared AS boolean[]), CAST(:rpm AS integer[]), CAST(:want AS integer[]),
    CAST(:release AS integer[]), CAST(:waiting AS integer[]), CAST(:successes AS integer[]),
    CAST(:throttles AS integer[]), CAST(:pause_s AS double precision[]),
    CAST(:lease_timeout_s AS double precision));

-- name: endpoint_release_worker
-- A worker process that stops gives back every endpoint slot it holds.
DELETE FROM rhesis.endpoint_leases WHERE worker_id = :worker;


-- ===== Workers =====
-- Worker processes: registration, heartbeat and liveness lock
-- (rhesis_pipeline.worker.registry).

-- name: register_worker
-- Register a worker process; returns its lock id.
INSERT INTO rhesis.workers (id, host, pid, queues)
VALUES (CAST(:id AS uuid), :host, :pid, CAST(:queues AS text[]))
RETURNING lock_id;

-- name: heartbeat
-- A worker is alive; returns its lock id (no row: the worker is not registered).
UPDATE rhesis.workers SET heartbeat_at = now() WHERE id = CAST(:id AS uuid) RETURNING lock_id;

-- name: try_worker_lock
-- Take a worker's liveness lock for this session; false if another session holds it.
SELECT pg_try_advisory_lock(CAST(:lock_class AS integer), CAST(:lock_id AS integer));

-- name: release_worker_lock
-- Release a worker's liveness lock (clean stop).
SELECT pg_advisory_unlock(CAST(:lock_class AS integer), CAST(:lock_id AS integer));

-- name: deregister_worker
-- A worker stopped cleanly.
UPDATE rhesis.workers SET stopped_at = now(), heartbeat_at = now() WHERE id = CAST(:id AS uuid);


-- ===== Reading runs =====
-- Runs and results as the public API returns them (rhesis_pipeline.runs).

-- name: get_run
-- One run, every column a reader needs (the fields of run_record.Run); its counters are
-- its progress, read without counting result rows; trace_id: its trace's id (hex) when
-- it was launched by a process that traces, from the traceparent stored then.
SELECT id, name, status, organization_id, user_id, total, done, passed, failed, errored,
       lost, cancelled, cancel_requested, created_at, started_at, finished_at,
       last_progress_at, collected_count, summary, rerun_of,
       substring(trace_context->>'traceparent' from 4 for 32) AS trace_id
FROM rhesis.test_runs
WHERE id = :run_id;

-- name: get_results
-- The results of one run in suite order.
SELECT test_id, position, status, output, metrics, error, attempts, duration_ms, worker,
       started_at, finished_at
FROM rhesis.test_results
WHERE run_id = :run_id
ORDER BY position;

-- name: snapshot_transaction
-- Make the transaction just begun one read-only snapshot (REPEATABLE READ): an export
-- reads a run's counters and then streams its results, and both must describe the same
-- moment while workers go on recording outcomes (rhesis_pipeline.runs.export.snapshot).
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: recent_runs
-- The newest runs (the columns of get_run).
SELECT id, name, status, organization_id, user_id, total, done, passed, failed, errored,
       lost, cancelled, cancel_requested, created_at, started_at, finished_at,
       last_progress_at, collected_count, summary
FROM rhesis.test_runs
ORDER BY created_at DESC
LIMIT :limit;

-- name: run_ids_between
-- Ids of the runs from :low to :high (a run id prefix padded with 0s and with fs), at most
-- :limit: one range scan of the primary key; row-level security hides other tenants'.
SELECT id FROM rhesis.test_runs
WHERE id BETWEEN CAST(:low AS uuid) AND CAST(:high AS uuid)
ORDER BY id
LIMIT :limit;

-- name: running_members
-- How many of a run's unfinished members a worker is running now (their message claimed
-- in a member queue; one waiting in a delay queue for its retry's backoff is waiting).
SELECT count(*)
FROM rhesis.test_results r
JOIN dramatiq.queue q ON q.message_id = r.message_id
WHERE r.run_id = :run_id AND r.status = 'queued'
  AND q."state" = 'consumed' AND q.queue_name NOT LIKE '%.DQ';


-- name: run_metric_summary
-- Per metric name of one run: how many tests it judged, how many passed, and the mean of
-- the scores it gave (a verdict without a numeric score counts for the pass rate only).
-- One pass over the run's result rows (its primary-key range); nothing held in Python.
SELECT m.value->>'name' AS name,
       min(m.value->>'type') AS type,
       count(*) AS judged,
       count(*) FILTER (WHERE m.value->'passed' = 'true'::jsonb) AS passed,
       count(*) FILTER (WHERE jsonb_typeof(m.value->'score') = 'number') AS scored,
       avg(CASE WHEN jsonb_typeof(m.value->'score') = 'number'
                THEN (m.value->>'score')::float8 END) AS mean_score
FROM rhesis.test_results r
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(r.metrics) = 'array' THEN r.metrics ELSE '[]'::jsonb END) AS m
WHERE r.run_id = :run_id AND jsonb_typeof(m.value) = 'object'
GROUP BY 1
ORDER BY 1;

-- ===== Comparing runs =====
-- Two runs side by side, test by test (rhesis_pipeline.runs.diff).

-- name: diff_runs
-- The tests of run :run_a and run :run_b, matched by test_id, whose status differs or that
-- one run lacks, as change: regression (passed -> failed or error), fix (failed or error
-- -> passed), changed (any other difference: -> lost, cancelled, failed <-> error ...),
-- only_in_a, only_in_b. Regressions first, then fixes, changed, only in A, only in B; each
-- in B's suite order (A's for tests only in A). The join reads two primary-key ranges;
-- the caller reads the rows through a server-side cursor, so nothing holds both runs.
SELECT d.test_id, d.change, d.status_a, d.status_b, d.position_a, d.position_b,
       ra.error AS error_a, ra.metrics AS metrics_a, rb.error AS error_b, rb.metrics AS metrics_b
FROM (
    SELECT COALESCE(a.test_id, b.test_id) AS test_id,
           CASE WHEN b.test_id IS NULL THEN 'only_in_a'
                WHEN a.test_id IS NULL THEN 'only_in_b'
                WHEN a.status = 'passed' AND b.status IN ('failed', 'error') THEN 'regression'
                WHEN a.status IN ('failed', 'error') AND b.status = 'passed' THEN 'fix'
                WHEN a.status <> b.status THEN 'changed'
           END AS change,
           a.status AS status_a, b.status AS status_b,
           a.position AS position_a, b.position AS position_b
    FROM (SELECT test_id, status, position FROM rhesis.test_results
          WHERE run_id = CAST(:run_a AS uuid)) AS a
    FULL JOIN (SELECT test_id, status, position FROM rhesis.test_results
               WHERE run_id = CAST(:run_b AS uuid)) AS b ON a.test_id = b.test_id
) AS d
LEFT JOIN rhesis.test_results ra ON ra.run_id = CAST(:run_a AS uuid) AND ra.test_id = d.test_id
LEFT JOIN rhesis.test_results rb ON rb.run_id = CAST(:run_b AS uuid) AND rb.test_id = d.test_id
WHERE d.change IS NOT NULL
ORDER BY CASE d.change WHEN 'regression' THEN 1 WHEN 'fix' THEN 2 WHEN 'changed' THEN 3
                       WHEN 'only_in_a' THEN 4 ELSE 5 END,
         COALESCE(d.position_b, d.position_a), d.test_id;

-- name: previous_run_of_name
-- The run created last before run :run_id among those with the same name (the
-- dashboard's default "compare with"); none: NULL. Walks test_runs_name_idx.
SELECT p.id
FROM rhesis.test_runs r
JOIN rhesis.test_runs p
  ON lower(p.name) = lower(r.name) AND p.name = r.name
 AND (p.created_at, p.id) < (r.created_at, r.id)
WHERE r.id = CAST(:run_id AS uuid)
ORDER BY p.created_at DESC, p.id DESC
LIMIT 1;

-- ===== Maintenance =====
-- Rescue, expiry and retention, in LIMIT batches, one runner at a time under advisory
-- locks (rhesis_pipeline.maintenance).

-- name: try_maintenance_lock
-- Take the advisory lock of one maintenance job for this transaction; false if held.
SELECT pg_try_advisory_xact_lock(:key);

-- name: try_sweep_lock
-- Take the sweeper's session lock (one sweep at a time); false if another holds it.
SELECT pg_try_advisory_lock(:key);

-- name: release_sweep_lock
-- Release the sweeper's session lock.
SELECT pg_advisory_unlock(:key);

-- name: find_orphans
-- Consumed messages whose claim belongs to a dead worker, decided by liveness, never by
-- the message's age. Dead: unknown or stopped; silent for longer than :timeout_s (hung,
-- frozen, cut off); or not holding its liveness lock AND silent for longer than
-- :lock_grace_s (a lock-less worker with a recent heartbeat is reconnecting after a
-- connection loss, not dead). Heartbeat and lock are judged only by a session connected
-- for :settle_s or more: one that has just (re)connected may have lost the database
-- together with every worker, which then need that long to reconnect and take their
-- locks again. Locked (SKIP LOCKED) so two rescuers never take the same message.
WITH me AS (
    SELECT EXTRACT(EPOCH FROM clock_timestamp() - backend_start) AS connected_s
    FROM pg_stat_activity
    WHERE pid = pg_backend_pid()
)
SELECT q.message_id, q.queue_name, q.message->>'actor_name' AS actor_name,
       q.message->'args' AS args, q.message->'options' AS options,
       c.claimed_at, c.started_at, c.worker_id, w.host || ':' || w.pid AS worker_name
FROM dramatiq.queue q
JOIN rhesis.claims c ON c.message_id = q.message_id
LEFT JOIN rhesis.workers w ON w.id = c.worker_id
WHERE q."state" = 'consumed'
  AND (w.id IS NULL
       OR w.stopped_at IS NOT NULL
       OR ((SELECT connected_s FROM me) >= :settle_s
           AND (w.heartbeat_at < CAST(:now AS timestamptz) - make_interval(secs => :timeout_s)
                OR (w.heartbeat_at
                        < CAST(:now AS timestamptz) - make_interval(secs => :lock_grace_s)
                    AND NOT EXISTS (
                        SELECT 1 FROM pg_locks l
                        WHERE l.locktype = 'advisory' AND l.granted
                          AND l.database = (SELECT oid FROM pg_database
                                            WHERE datname = current_database())
                          AND l.classid = :lock_class AND l.objid = w.lock_id
                          AND l.objsubid = 2)))))
LIMIT :batch
FOR UPDATE OF q SKIP LOCKED;

-- name: requeue_orphans
-- Put rescued messages back in their queue at their original place (mtime = when they
-- were first enqueued, so they do not wait behind the backlog); those in :counted (their
-- worker died while running them) count the lost attempt (options.retries + 1) and the
-- worker death (options.rhesis_lost + 1); the others (claimed, not known to have
-- started) run again without counting, marked ``options.rhesis_unstarted``: a member
-- whose start may have been lost with its worker (marks of preloaded members are written
-- in batches) runs next on the careful path, which marks its start before executing, so a
-- test that kills its worker costs at most one uncounted death. The mark stays. Forget
-- their claims, wake each queue's consumers.
WITH requeued AS (
    UPDATE dramatiq.queue
    SET "state" = 'queued',
        mtime = COALESCE(
            to_timestamp(CAST(message->>'message_timestamp' AS bigint) / 1000.0)
                AT TIME ZONE 'UTC',
            now() AT TIME ZONE 'UTC'),
        message = CASE
            WHEN message_id = ANY(CAST(:counted AS uuid[])) THEN
                jsonb_set(
                    jsonb_set(message, '{options,retries}',
                              to_jsonb(COALESCE(CAST(message->'options'->>'retries' AS integer),
                                                0) + 1)),
                    '{options,rhesis_lost}',
                    to_jsonb(COALESCE(CAST(message->'options'->>'rhesis_lost' AS integer), 0)
                             + 1))
            WHEN message->>'actor_name' = 'execute_single_test'
                 AND jsonb_typeof(message->'options') = 'object' THEN
                jsonb_set(message, '{options,rhesis_unstarted}', 'true')
            ELSE message
        END
    WHERE message_id = ANY(CAST(:ids AS uuid[])) AND "state" = 'consumed'
    RETURNING message_id, queue_name
), forgotten AS (
    DELETE FROM rhesis.claims c USING requeued r WHERE c.message_id = r.message_id RETURNING 1
), woken AS (
    SELECT pg_notify('dramatiq.' || q.queue_name || '.enqueue', 'rescued')
    FROM (SELECT DISTINCT queue_name FROM requeued) AS q
)
SELECT (SELECT count(*) FROM requeued), (SELECT count(*) FROM forgotten),
       (SELECT count(*) FROM woken);

-- name: reject_orphans
-- Reject rescued messages that must not run again (a member past its time limit, or one
-- whose workers died running it max_retries + 1 times, whose outcome is stored as
-- error) and forget their claims.
WITH rejected AS (
    UPDATE dramatiq.queue
    SET "state" = 'rejected', mtime = (now() AT TIME ZONE 'UTC')
    WHERE message_id = ANY(CAST(:ids AS uuid[])) AND "state" = 'consumed'
    RETURNING message_id
)
DELETE FROM rhesis.claims c USING rejected r WHERE c.message_id = r.message_id;

-- name: overdue_tests
-- Tests without an outcome in unfinished runs created before :cutoff.
SELECT r.run_id, r.test_id
FROM rhesis.test_runs u
JOIN rhesis.test_results r ON r.run_id = u.id
WHERE u.status IN ('QUEUED', 'IN_PROGRESS')
  AND u.created_at < :cutoff
  AND r.status = 'queued'
ORDER BY r.run_id, r.position
LIMIT :batch;

-- name: purge_finished_messages
-- Delete up to :batch done or rejected queue rows last changed before :cutoff; returns
-- how many. mtime holds UTC wall-clock time (dramatiq-pg's default), hence the AT TIME ZONE.
WITH doomed AS (
    SELECT message_id
    FROM dramatiq.queue
    WHERE "state" IN ('done', 'rejected')
      AND mtime < (CAST(:cutoff AS timestamptz) AT TIME ZONE 'UTC')
    -- No ORDER BY: any old row will do, and with 1,000,000 finished rows sorting them
    -- to pick a batch of 1,000 took 99 ms; without it 0.2 ms (EXPLAIN ANALYZE).
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
DELETE FROM dramatiq.queue q
USING doomed
WHERE q.message_id = doomed.message_id;

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

-- name: purge_dead_workers
-- Delete up to :batch worker rows stopped or silent since before :cutoff that hold no
-- claim; returns how many.
WITH doomed AS (
    SELECT w.id FROM rhesis.workers w
    WHERE COALESCE(w.stopped_at, w.heartbeat_at) < :cutoff
      AND NOT EXISTS (SELECT 1 FROM rhesis.claims c WHERE c.worker_id = w.id)
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
DELETE FROM rhesis.workers w USING doomed WHERE w.id = doomed.id;

-- name: purge_retired_results
-- Delete up to :batch result rows of runs finished before :cutoff (run retention);
-- returns how many. The runs themselves go once their results are gone.
WITH doomed AS (
    SELECT r.run_id, r.test_id
    FROM rhesis.test_runs u
    JOIN rhesis.test_results r ON r.run_id = u.id
    WHERE u.finished_at < CAST(:cutoff AS timestamptz)
    LIMIT :batch
    FOR UPDATE OF r SKIP LOCKED
)
DELETE FROM rhesis.test_results r
USING doomed
WHERE r.run_id = doomed.run_id AND r.test_id = doomed.test_id;

-- name: purge_retired_runs
-- Delete up to :batch runs finished before :cutoff whose results are all deleted (run
-- retention), adding their tests and runs by status to rhesis.metric_totals first, so
-- that the Prometheus counters never go down; returns how many (rowcount).
WITH doomed AS (
    SELECT u.id, u.status, u.passed, u.failed, u.errored, u.lost, u.cancelled
    FROM rhesis.test_runs u
    WHERE u.finished_at < CAST(:cutoff AS timestamptz)
      AND NOT EXISTS (SELECT 1 FROM rhesis.test_results r WHERE r.run_id = u.id)
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), totals AS (
    INSERT INTO rhesis.metric_totals (metric, labels, value)
    SELECT t.metric, t.labels, sum(t.n)
    FROM doomed d
    CROSS JOIN LATERAL (VALUES ('deleted_tests', 'passed', d.passed),
                               ('deleted_tests', 'failed', d.failed),
                               ('deleted_tests', 'error', d.errored),
                               ('deleted_tests', 'lost', d.lost),
                               ('deleted_tests', 'cancelled', d.cancelled),
                               ('deleted_runs', d.status, 1)) AS t(metric, labels, n)
    GROUP BY t.metric, t.labels
    ON CONFLICT (metric, labels) DO UPDATE SET value = rhesis.metric_totals.value + EXCLUDED.value
)
DELETE FROM rhesis.test_runs u
USING doomed
WHERE u.id = doomed.id;


-- ===== Monitor =====
-- Operator queries (rhesis_pipeline.monitor, rhesis-monitor). Ages are computed by the
-- server (clock_timestamp(), or :now when a test injects it) so that client clocks do not
-- matter. dramatiq.queue's mtime holds UTC wall-clock time (dramatiq-pg's convention), so
-- its ages compare it with the UTC wall clock.

-- name: runs_by_status
-- How many runs there are in each status.
SELECT status, count(*) AS runs FROM rhesis.test_runs GROUP BY status;

-- name: unfinished_runs
-- Unfinished runs (QUEUED, IN_PROGRESS), oldest first, at most :limit (only the stuck
-- ones if :only_stuck). stuck: QUEUED or IN_PROGRESS for :max_age_s seconds or longer,
-- or without progress for that long. matching and stuck_total count every row, not
-- only the :limit returned.
WITH clock AS (
    SELECT COALESCE(CAST(:now AS timestamptz), clock_timestamp()) AS now
), unfinished AS (
    SELECT u.id, u.name, u.status, u.organization_id, u.user_id, u.total, u.done,
           u.passed, u.failed, u.errored, u.lost, u.cancelled, u.cancel_requested,
           u.created_at, u.started_at, u.finished_at, u.last_progress_at, u.collected_count,
           u.summary,
           EXTRACT(EPOCH FROM clock.now - u.created_at) AS age_s,
           EXTRACT(EPOCH FROM clock.now - COALESCE(u.started_at, u.created_at)) AS in_status_s,
           EXTRACT(EPOCH FROM clock.now
                   - COALESCE(u.last_progress_at, u.started_at, u.created_at)) AS idle_s,
           COALESCE(u.started_at, u.created_at) <= clock.now - make_interval(secs => :max_age_s)
               OR COALESCE(u.last_progress_at, u.started_at, u.created_at)
                  <= clock.now - make_interval(secs => :max_age_s) AS stuck
    FROM rhesis.test_runs u, clock
    WHERE u.status IN ('QUEUED', 'IN_PROGRESS')
)
SELECT *, count(*) OVER () AS matching, count(*) FILTER (WHERE stuck) OVER () AS stuck_total
FROM unfinished
WHERE stuck OR NOT :only_stuck
ORDER BY created_at
LIMIT :limit;

-- name: stalled_callbacks
-- Unfinished runs whose every test has an outcome but whose callback will not run: its
-- message failed for good (rejected) or is gone. At most :limit, oldest first.
SELECT u.id AS run_id, u.name, CAST(q."state" AS text) AS callback_state
FROM rhesis.test_runs u
LEFT JOIN dramatiq.queue q ON q.message_id = u.callback_message_id
WHERE u.status IN ('QUEUED', 'IN_PROGRESS') AND u.done = u.total
  AND (q.message_id IS NULL OR q."state" IN ('rejected', 'done'))
ORDER BY u.created_at
LIMIT :limit;

-- name: server_autovacuum
-- Whether the server runs autovacuum (the health check warns when it does not).
SELECT current_setting('autovacuum') = 'on';

-- name: tenant_load
-- Per organization (options.tenant.organization_id, '' for none): its members waiting in
-- :queue_name or its delay queue, and those claimed (running, or held by a worker about
-- to run them); the busiest :limit organizations.
SELECT COALESCE(message->'options'->'tenant'->>'organization_id', '') AS organization,
       count(*) FILTER (WHERE "state" = 'queued') AS waiting,
       count(*) FILTER (WHERE "state" = 'consumed') AS running
FROM dramatiq.queue
WHERE queue_name IN (:queue_name, :queue_name || '.DQ') AND "state" IN ('queued', 'consumed')
GROUP BY 1
ORDER BY count(*) DESC, 1
LIMIT :limit;

-- name: queue_stats
-- Messages per queue and state, and the age in seconds of the oldest one in each.
SELECT queue_name, CAST("state" AS text) AS state, count(*) AS messages,
       EXTRACT(EPOCH FROM CAST(clock_timestamp() AT TIME ZONE 'UTC' AS timestamptz) - min(mtime))
           AS oldest_age_s
FROM dramatiq.queue
GROUP BY queue_name, "state"
ORDER BY queue_name, "state";

-- name: list_workers
-- Registered workers, newest first, at most :limit, with whether each holds its liveness
-- lock. alive: not stopped, heartbeat within :timeout_s, and holding its lock or, while
-- it reconnects after a connection loss, heartbeat within :lock_grace_s (the rescuer's
-- definition, find_orphans).
WITH w AS (
    SELECT w.*,
           EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                     AND l.classid = :lock_class AND l.objid = w.lock_id
                     AND l.database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())) AS lock_held,
           EXTRACT(EPOCH FROM clock_timestamp() - w.heartbeat_at) AS heartbeat_age_s
    FROM rhesis.workers w
)
SELECT w.id AS worker_id, w.host, w.pid, w.queues, w.started_at, w.heartbeat_at,
       w.stopped_at, w.heartbeat_age_s, w.lock_held,
       (w.stopped_at IS NULL
        AND w.heartbeat_age_s <= :timeout_s
        AND (w.lock_held OR w.heartbeat_age_s <= :lock_grace_s)) AS alive
FROM w
ORDER BY w.started_at DESC
LIMIT :limit;

-- name: list_claims
-- Consumed messages with who claimed them (worker_id NULL: no claim recorded, e.g. a
-- stock dramatiq-pg consumer), oldest claim first, at most :limit.
SELECT q.message_id, q.queue_name, q.message->>'actor_name' AS actor_name,
       q.message->'args' AS args, c.worker_id, c.claimed_at,
       EXTRACT(EPOCH FROM CAST(clock_timestamp() AT TIME ZONE 'UTC' AS timestamptz) - q.mtime)
           AS age_s
FROM dramatiq.queue q
LEFT JOIN rhesis.claims c ON c.message_id = q.message_id
WHERE q."state" = 'consumed'
ORDER BY q.mtime
LIMIT :limit;

-- name: get_run_timing
-- One run's row with what an operator needs beyond get_run: times and revocation.
SELECT id, cancel_requested, last_progress_at, callback_message_id, callback_enqueued_at,
       options, executor,
       EXTRACT(EPOCH FROM clock_timestamp() - created_at) AS age_s,
       EXTRACT(EPOCH FROM clock_timestamp()
               - COALESCE(last_progress_at, started_at, created_at)) AS idle_s
FROM rhesis.test_runs
WHERE id = :run_id;

-- name: run_messages
-- A run's queue messages (members and its callback) per queue, actor and state. A member's
-- message is deleted with its outcome: these are the unfinished (or rejected) ones.
SELECT q.queue_name, q.message->>'actor_name' AS actor_name, CAST(q."state" AS text) AS state,
       count(*) AS messages
FROM dramatiq.queue q
WHERE q.message_id IN (SELECT r.message_id FROM rhesis.test_results r WHERE r.run_id = :run_id)
   OR q.message_id = (SELECT u.callback_message_id FROM rhesis.test_runs u WHERE u.id = :run_id)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- name: run_tests
-- Every test of a run in suite order, with its message's state and who holds it. attempts:
-- of a finished test, as stored; of an unfinished one, the failed attempts so far.
SELECT r.test_id, r.position, r.status,
       CASE WHEN r.status = 'queued'
            THEN COALESCE(CAST(q.message->'options'->>'retries' AS integer), 0)
            ELSE r.attempts END AS attempts,
       r.error, r.worker, r.duration_ms, r.started_at, r.finished_at,
       q.queue_name, CAST(q."state" AS text) AS message_state,
       c.worker_id AS claimed_by, c.claimed_at
FROM rhesis.test_results r
LEFT JOIN dramatiq.queue q ON q.message_id = r.message_id
LEFT JOIN rhesis.claims c ON c.message_id = r.message_id
WHERE r.run_id = :run_id
ORDER BY r.position;

-- name: endpoint_limits_status
-- Per limit key: its limits, what is learned (the adaptive limit), the tests in flight
-- and waiting in live leases, the pause left, 429s in about the last minute (this
-- minute's plus the previous one's share), and totals since the key was first used.
SELECT l.key, l.max_concurrency, l.declared, l.requests_per_minute, l.current_limit,
       COALESCE(sum(e.slots) FILTER (WHERE e.renewed_at > c.live_after), 0) AS in_flight,
       COALESCE(sum(e.waiting) FILTER (WHERE e.renewed_at > c.live_after), 0) AS waiting,
       GREATEST(0, EXTRACT(EPOCH FROM COALESCE(l.paused_until, c.now) - c.now)) AS paused_for_s,
       CASE
           WHEN l.minute_start > c.now - interval '1 minute'
               THEN l.minute_throttles + round(l.prev_minute_throttles
                    * (1 - EXTRACT(EPOCH FROM c.now - l.minute_start) / 60))
           WHEN l.minute_start > c.now - interval '2 minutes'
               THEN round(l.minute_throttles
                    * (2 - EXTRACT(EPOCH FROM c.now - l.minute_start) / 60))
           ELSE 0
       END AS throttled_last_minute,
       l.throttled_total, l.requests_total
FROM rhesis.endpoint_limits l
CROSS JOIN (SELECT clock_timestamp() AS now,
                   clock_timestamp() - make_interval(secs => :lease_timeout_s) AS live_after) c
LEFT JOIN rhesis.endpoint_leases e ON e.key = l.key
GROUP BY l.key, c.now
ORDER BY l.key;


-- ===== Metrics =====
-- Running totals behind the Prometheus counters and histograms
-- (rhesis_pipeline.monitor.prometheus).

-- name: metric_totals
-- Every running total kept for the Prometheus counters and histograms.
SELECT metric, labels, value FROM rhesis.metric_totals;

-- name: tests_finished_by_status
-- Tests with a terminal outcome, by status, over the runs still stored (visible ones, for
-- a tenant); what retention deleted is in metric_totals (deleted_tests).
SELECT COALESCE(sum(passed), 0) AS passed, COALESCE(sum(failed), 0) AS failed,
       COALESCE(sum(errored), 0) AS error, COALESCE(sum(lost), 0) AS lost,
       COALESCE(sum(cancelled), 0) AS cancelled
FROM rhesis.test_runs;


-- ===== Autoscaling =====
-- What KEDA's postgresql scaler runs (rhesis-monitor keda-query prints it; the worker
-- ScaledObject in deploy/kubernetes carries it verbatim, and a test checks both agree).

-- name: keda_waiting_tests
-- Messages waiting (queued, also in their delay queues) or claimed (running) on the
-- queues {queues} (a list of quoted literals: the queues a worker Deployment serves and
-- their .DQ): one integer, the work its replicas hold. Claimed ones count so that KEDA
-- never scales away the workers still executing a run. Each count is an index-only scan
-- of a partial index (queue_claim, queue_claimed_by_organization): it never reads the
-- done rows, however many.
SELECT (SELECT count(*) FROM dramatiq.queue WHERE "state" = 'queued' AND queue_name IN ({queues})) + (SELECT count(*) FROM dramatiq.queue WHERE "state" = 'consumed' AND queue_name IN ({queues})) AS tests;


-- ===== Revocation and cleaning =====
-- Operators revoke runs and delete waiting messages (rhesis-monitor revoke, clean).

-- name: lock_run_for_revoke
-- Lock a run's row for revocation; returns it (nothing for an unknown run).
SELECT id, name, status, cancel_requested FROM rhesis.test_runs WHERE id = :run_id FOR UPDATE;

-- name: revoke_preview
-- What revoking a run touches: its unfinished tests, of those how many are claimed by a
-- worker (running), and the run's member messages waiting in a queue (removed).
SELECT count(*) FILTER (WHERE r.status = 'queued') AS unfinished,
       count(*) FILTER (WHERE q."state" = 'queued') AS queued_messages,
       count(*) FILTER (WHERE r.status = 'queued' AND q."state" = 'consumed') AS running
FROM rhesis.test_results r
LEFT JOIN dramatiq.queue q ON q.message_id = r.message_id
WHERE r.run_id = :run_id;

-- name: run_callback_state
-- The state of a run's callback message: NULL if it is not in the queue (never enqueued,
-- or purged), else queued, consumed, done or rejected (failed for good).
SELECT CAST(q."state" AS text)
FROM rhesis.test_runs u
LEFT JOIN dramatiq.queue q ON q.message_id = u.callback_message_id
WHERE u.id = :run_id;

-- name: request_cancel
-- Mark a run revoked: members delivered from now on are skipped (stored as cancelled).
-- Workers are told on :channel at commit: members they preloaded are skipped too.
WITH marked AS (
    UPDATE rhesis.test_runs SET cancel_requested = true WHERE id = :run_id RETURNING id
)
SELECT pg_notify(:channel, CAST(id AS text)) FROM marked;

-- name: remove_queued_members
-- Delete a run's member messages that no worker holds (waiting in their queue or in its
-- delay queue); a message being claimed meanwhile is left to its worker. The ids are
-- collected first (ARRAY(...) runs once), so the queue is searched by its key whatever
-- the planner's statistics say (a join planned on stale statistics took 12 s for 10,000).
DELETE FROM dramatiq.queue
WHERE message_id = ANY(ARRAY(SELECT r.message_id FROM rhesis.test_results r
                             WHERE r.run_id = :run_id))
  AND "state" = 'queued';

-- name: unfinished_tests
-- Ids of a run's tests without an outcome.
SELECT test_id FROM rhesis.test_results WHERE run_id = :run_id AND status = 'queued'
ORDER BY position;

-- name: queued_messages_by_actor
-- Waiting messages per queue and actor; :queue NULL means every queue, else the queue
-- and its delay queue.
SELECT queue_name, message->>'actor_name' AS actor_name, count(*) AS messages
FROM dramatiq.queue
WHERE "state" = 'queued'
  AND (CAST(:queue AS text) IS NULL OR queue_name IN (:queue, :queue || '.DQ'))
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: delete_queued_messages
-- Delete waiting messages of :queue (and its delay queue; NULL: every queue) except
-- those of actor :keep_actor; returns each one's queue, actor and first argument.
DELETE FROM dramatiq.queue
WHERE "state" = 'queued'
  AND (CAST(:queue AS text) IS NULL OR queue_name IN (:queue, :queue || '.DQ'))
  AND message->>'actor_name' IS DISTINCT FROM :keep_actor
RETURNING queue_name, message->>'actor_name' AS actor_name, message->'args'->>0 AS first_arg;

-- name: unfinished_runs_among
-- Which of the run ids :ids are unfinished runs.
SELECT id FROM rhesis.test_runs
WHERE id = ANY(CAST(:ids AS uuid[])) AND status IN ('QUEUED', 'IN_PROGRESS')
ORDER BY id;

-- name: queued_member_runs
-- The first argument (a run id) of waiting messages of actor :actor in :queue and its
-- delay queue (NULL: every queue).
SELECT DISTINCT message->'args'->>0 AS run_id
FROM dramatiq.queue
WHERE "state" = 'queued'
  AND (CAST(:queue AS text) IS NULL OR queue_name IN (:queue, :queue || '.DQ'))
  AND message->>'actor_name' = :actor;


-- ===== Dashboard =====
-- Pages of the web dashboard (rhesis_pipeline.dashboard).

-- name: dashboard_runs
-- A page of runs for the dashboard, newest first, after the keyset (:before_at,
-- :before_id) if given; filters by status, organization and the start of the name, any
-- case (:name_prefix: a LIKE pattern, its wildcards escaped) (each NULL: any). Walks
-- test_runs_created_at_idx (or the tenant or name index) and stops after :limit.
SELECT id, name, status, organization_id, total, done, passed, failed, errored, lost,
       cancelled, created_at, started_at, finished_at, rerun_of,
       EXTRACT(EPOCH FROM COALESCE(finished_at, clock_timestamp())
                          - COALESCE(started_at, created_at)) AS duration_s,
       EXTRACT(EPOCH FROM clock_timestamp() - created_at) AS age_s
FROM rhesis.test_runs
WHERE (CAST(:status AS text) IS NULL OR status = CAST(:status AS text))
  AND (CAST(:organization AS text) IS NULL OR organization_id = CAST(:organization AS text))
  AND (CAST(:name_prefix AS text) IS NULL OR lower(name) LIKE CAST(:name_prefix AS text))
  AND (CAST(:before_at AS timestamptz) IS NULL
       OR (created_at, id) < (CAST(:before_at AS timestamptz), CAST(:before_id AS uuid)))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: dashboard_active_runs
-- Runs queued or in progress, newest first (the overview's live progress bars).
SELECT id, name, status, organization_id, total, done, passed, failed, errored, lost,
       cancelled
FROM rhesis.test_runs
WHERE status IN ('QUEUED', 'IN_PROGRESS')
ORDER BY created_at DESC
LIMIT :limit;

-- name: dashboard_run_tests
-- A page of a run's tests in suite order after position :after, all or only those that
-- did not pass (:only_failed: failed, error, lost), with verdicts and reasons, and the
-- state of an unfinished one's message (consumed: running).
SELECT r.test_id, r.position, r.status, r.attempts, r.duration_ms, r.error, r.metrics,
       r.worker, r.finished_at, CAST(q."state" AS text) AS message_state
FROM rhesis.test_results r
LEFT JOIN dramatiq.queue q ON q.message_id = r.message_id
WHERE r.run_id = :run_id AND r.position > :after
  AND (NOT :only_failed OR r.status IN ('failed', 'error', 'lost'))
ORDER BY r.position
LIMIT :limit;

-- name: dashboard_duration_histogram
-- A run's test durations in :buckets equal buckets between the shortest and the longest:
-- (bucket 1..:buckets, tests, shortest ms, longest ms).
WITH d AS (
    SELECT duration_ms FROM rhesis.test_results
    WHERE run_id = :run_id AND duration_ms IS NOT NULL
), bounds AS (
    SELECT min(duration_ms) AS lo, max(duration_ms) AS hi FROM d
)
SELECT LEAST(width_bucket(d.duration_ms, b.lo, b.hi + 1e-9, :buckets), :buckets) AS bucket,
       count(*) AS tests, min(b.lo) AS lo, min(b.hi) AS hi
FROM d CROSS JOIN bounds b
GROUP BY 1
ORDER BY 1;
