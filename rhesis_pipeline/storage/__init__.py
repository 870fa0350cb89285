"""Storage: everything that talks to Postgres, and the only layer that knows the driver.

Start with :mod:`~rhesis_pipeline.storage.db` (transactions) and ``sql/queries.sql`` (every
statement, named, in sections that follow a test's life); :mod:`~rhesis_pipeline.storage.db`'s
docstring lists the other modules and their one job each.
"""
