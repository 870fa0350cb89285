"""A test run's life in the database: submitted, its members' outcomes, completed, read.

A run is submitted in one transaction (its row, its group counter and one message per
test), each member's outcome is stored and counted once, and the member that brings the
counter to zero enqueues the one completion callback, which decides the run's status.
Reading, comparing two runs, re-running, reporting and the run's ids live here too.
"""
