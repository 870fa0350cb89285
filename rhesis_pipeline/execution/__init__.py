"""Executing one test: calling its target and judging the answer.

The executors call a test's target (an HTTP endpoint or a Python function) and return an
:class:`Execution` (answer, latency, raw response) or raise an error that says whether a
retry may help; the metrics judge the answer; :mod:`.storable` and :mod:`.values` make
what a target returns safe to store. Nothing here knows about queues, runs or workers.
"""
