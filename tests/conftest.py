"""Shared pytest fixtures: one session-wide SSH host lab (see tests/lab.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.lab import Lab, lab_unavailable_reason


def _in_ci() -> bool:
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


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One Lab for the whole session; hosts are added by the tests that need them."""
    reason = lab_unavailable_reason()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"SSH lab unavailable in CI: {reason}")
        pytest.skip(f"SSH lab unavailable: {reason}")
    with Lab() as the_lab:
        yield the_lab
