"""The fixtures issue 18's phase 0 lab tests share: ``p0`` (a private origin and hosts wired to
it, one per module) and ``state`` (the controller's state directory, one per test). A module
imports the functions (``p0_fixture``, ``state_fixture``); pytest knows them by those names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.harness import Lab
from tests.lab.test_lossless_lab import LosslessP0
from tests.lab.test_phase0_lab import P0


@pytest.fixture(name="p0", scope="module")
def p0_fixture(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> P0:
    return LosslessP0(lab, tmp_path_factory.mktemp("p0x"))


@pytest.fixture(name="state")
def state_fixture(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path
