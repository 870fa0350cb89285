"""The worker process: dramatiq's broker and consumer on Postgres, and the task bodies.

The broker and consumer claim messages fairly across organizations, hand them to
dramatiq's threads or to the per-process event loop (:mod:`.inflight`, for hundreds of
slow HTTP calls at once, within the endpoint limits every worker shares), and settle them
with the outcome in the same transaction. The middleware (:mod:`.middleware`) carries
the tenant context, logs, retries, the registry of live workers and the outcomes.
"""
