"""Every advisory lock key of rhesis-pipeline, in one place.

Postgres advisory locks are one 64-bit key or two 32-bit keys per database. Ours:

* ``(WORKER_LOCK_CLASS, lock_id)`` — a worker process's liveness lock, a *session*
  lock held on its heartbeat connection for its lifetime (see
  :mod:`rhesis_pipeline.worker.registry`). It vanishes with that connection, so "not held" means
  "dead, or reconnecting": the rescuer gives a lock-less worker ``lock_grace_s`` to take
  it again before it counts as dead.
* ``(CLAIM_LOCK_CLASS, hashtext(queue))`` — a transaction lock serialising the claims of a
  queue while ``RHESIS_TENANT_MAX_RUNNING`` caps what one organization may hold.
* ``SWEEP_LOCK_KEY`` — a session lock held for the duration of a sweep (one at a time).
* ``RETENTION_LOCK_KEY``, ``RESCUE_LOCK_KEY``, ``EXPIRE_LOCK_KEY`` — transaction locks
  taken by each batch of a maintenance service: one runner at a time per database.
"""

#: First key of the two-key advisory lock a live worker holds: (WORKER_LOCK_CLASS, lock_id).
WORKER_LOCK_CLASS = 0x5248
#: First key of the transaction lock that serialises capped claims of one queue.
CLAIM_LOCK_CLASS = 0x5249
#: Held by a running sweep (session lock).
SWEEP_LOCK_KEY = 0x52485349_0100
#: Held by each batch of the retention service (transaction lock).
RETENTION_LOCK_KEY = 0x52485349_0101
#: Held by each batch of the rescuer (transaction lock).
RESCUE_LOCK_KEY = 0x52485349_0102
#: Held by each batch of the overdue-run expiry (transaction lock).
EXPIRE_LOCK_KEY = 0x52485349_0103
