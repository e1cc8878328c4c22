"""Fixtures of the deployment tests: a real Prefect server in a subprocess (see prefect_processes.py)."""

from __future__ import annotations

from prefect_processes import prefect_api

__all__ = ["prefect_api"]
