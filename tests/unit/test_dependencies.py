"""The versions installed here — the ones the suite just ran with — are inside the ranges
pyproject.toml declares, so a declared range is a tested one."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIREMENTS = [Requirement(r) for r in
                [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["test"]]]


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=lambda r: r.name)
def test_installed_version_is_inside_the_declared_range(requirement: Requirement) -> None:
    installed = importlib.metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{requirement.name} {installed} is outside {requirement.specifier}: test it, then "
        "widen the range in pyproject.toml")


@pytest.mark.parametrize("requirement", REQUIREMENTS[:len(PROJECT["dependencies"])],
                         ids=lambda r: r.name)
def test_runtime_dependencies_have_an_upper_bound(requirement: Requirement) -> None:
    assert any(spec.operator == "<" for spec in requirement.specifier)
