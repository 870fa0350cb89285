"""Queue names. Workers consume all of them unless ``RHESIS_QUEUES`` says otherwise."""

#: Periodic maintenance (purge, and the sweeper in later releases).
MAINTENANCE = "rhesis-maintenance"
