"""Executing one test: the executor that runs it, and the verdict on its answer.

* :mod:`.executors`: validates an executor spec and dispatches an attempt to
  :mod:`.python_target` or :mod:`.http_endpoint` (whose answers :mod:`.http_answer`
  judges: 429, 5xx, ``response_path``).
* :mod:`.attempt`: what an attempt ends as: an ``Execution``, or an error saying whether
  it is retried.
* :mod:`.metrics`: the test's metrics judge the answer; :mod:`.json_path` compiles the
  JSONPaths both use; :mod:`.judge` (with :mod:`.judge_spec`) asks an LLM judge for an
  ``llm_judge`` metric's score.
* :mod:`.values` (what a user's value may hold) and :mod:`.storable` (what a target's
  output may hold) keep what Postgres refuses out of a batch.
"""
