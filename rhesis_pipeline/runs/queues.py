"""Queue names. Workers consume all of them unless ``RHESIS_QUEUES`` says otherwise.

Callbacks have their own queue so that a run's completion is not stuck behind the
members of other runs.
"""

#: One message per test (execute_single_test).
TESTS = "rhesis-tests"
#: Completion callbacks (collect_results).
CALLBACKS = "rhesis-callbacks"
#: Periodic maintenance (purge, and the sweeper in later releases).
MAINTENANCE = "rhesis-maintenance"
