"""rhesis-pipeline: run test suites in parallel on Dramatiq workers with a Postgres broker."""

__version__ = "0.1.0.dev0"
