"""Prefect flows wiring the stages: ``convert_and_validate`` (one model) and ``validate_registry`` (a sweep)."""
