"""Command-line interfaces: ``rhesis-pipeline`` (users) and ``rhesis-monitor`` (operators)."""
