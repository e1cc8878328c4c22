"""Prefect deployments of Parity: schedules, triggers and work pools (see prefect.yaml)."""
