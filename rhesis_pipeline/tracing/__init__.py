"""Traces (OpenTelemetry): one trace per run, from the request that launched it to its
callback. Optional: the ``otel`` extra; without it nothing here imports OpenTelemetry.

The shape of a run's trace::

    POST /test-runs (the web backend's request span)
      └ launch_test_run ········ link ·······┐
                                              ▼
    test_run  (root: from launch to callback; run id, name, organization, total,
     │         final status and counts; linked to the request's span — or its child,
     │         RHESIS_TRACE_PARENT=child)
     ├ test_attempt  (one per attempt: test id, attempt, executor, verdict, latency,
     │  │             retry reason, rhesis.wait.queue_ms / endpoint_ms)
     │  ├ endpoint_budget  (waiting for the endpoint's shared limits, when it waited)
     │  └ POST  (the HTTP client span; its context goes to the endpoint as traceparent)
     ├ test_attempt  (rhesis.test.verdict=lost: a worker died running it; by the rescuer)
     └ collect_results  (the completion callback)

* :mod:`.setup` — whether a process traces (the standard OTEL_* variables) and its tracer;
* :mod:`.context` — a run's W3C trace context, stored on the run and its messages;
* :mod:`.ids` — the root span's ids, chosen at launch, used by the callback;
* :mod:`.spans` — what the spans are built from; then one module per span:
  :mod:`.launch`, :mod:`.attempts`, :mod:`.http`, :mod:`.completion` — each a no-op when
  the process does not trace.
"""
