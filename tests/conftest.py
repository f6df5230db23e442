"""Shared by every test: the `lab` marker, and CI's rule that a skipped lab test is a failure."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """CI=true (or any value but empty/0/false/no) means a skip must fail."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: runs against the SSH host lab (needs root, sshd, unshare, nsenter)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the lab fixture, so `-m lab` / `-m 'not lab'` work."""
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)
