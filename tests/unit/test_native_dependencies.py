"""Everything miyabi-ctl installs with installs on the phone that is its controller.

On Termux pip finds no wheel for Android (its python is not manylinux: Bionic, not glibc), so
every package that is not pure Python is built on the phone from its sdist — and Termux has no
Rust toolchain an operator wants to run there (a pydantic-core build takes an hour or fails:
pydantic-core#1474, #855). So each compiled package in the resolved dependency set must be one
Termux provides itself (``pkg install python-…``), or a C build against libraries Termux
packages, with clang. The list below says which, checked against termux/termux-packages
(packages/python-cryptography, packages/python-bcrypt, packages/libsodium, packages/libffi,
packages/libyaml; python-cryptography's install runs ``pip install cffi`` itself).
docs/platforms.md "The controller" gives the commands, and this test holds it to the list.

Pure-Python packages (a ``py3-none-any`` wheel, no extension module) need nothing and are not
listed: any number of them may come and go.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = (".so", ".pyd", ".dylib")


@dataclass(frozen=True)
class OnTermux:
    build: str  # what building it from source takes
    how: str  # where it comes from on Termux
    packages: tuple[str, ...]  # the Termux packages that provides or builds it


NATIVE_ON_TERMUX = {
    "cryptography": OnTermux("Rust (PyO3) and OpenSSL", "Termux's own package",
                             ("python-cryptography",)),
    "bcrypt": OnTermux("Rust (PyO3)", "Termux's own package", ("python-bcrypt",)),
    "cffi": OnTermux("C, against libffi", "built by pip from its sdist with clang (installing "
                     "python-cryptography runs that pip itself)", ("clang", "libffi")),
    "pynacl": OnTermux("C, against libsodium", "built by pip from its sdist with clang, against "
                       "Termux's libsodium (SODIUM_INSTALL=system)", ("clang", "libsodium")),
    # requests' (Apprise's) charset detector: here pip installs its mypyc-compiled manylinux
    # wheel; it also publishes a py3-none-any one, which pip takes where no binary wheel fits.
    "charset-normalizer": OnTermux("optional (mypyc speed-up)", "its pure-Python wheel from "
                                   "PyPI: nothing built", ()),
    "pyyaml": OnTermux("optional C, against libyaml", "built by pip from its sdist: with libyaml "
                       "when clang finds it, pure Python otherwise", ("libyaml",)),
}


def runtime_distributions() -> dict[str, importlib.metadata.Distribution]:
    """miyabi-ctl's dependencies as installed here, walked through each one's Requires-Dist
    (markers evaluated for this machine, no extras)."""
    environment = {**default_environment(), "extra": ""}
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [canonicalize_name(Requirement(r).name)
            for r in importlib.metadata.requires("miyabi-ctl") or []
            if not Requirement(r).marker or Requirement(r).marker.evaluate(environment)]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found[name] = importlib.metadata.distribution(name)
        for text in found[name].requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                todo.append(canonicalize_name(requirement.name))
    return found


def is_native(dist: importlib.metadata.Distribution) -> bool:
    """Not pure Python: its wheel is not ``*-none-any`` or not purelib, or it installed an
    extension module."""
    wheel = dist.read_text("WHEEL") or ""
    tags = re.findall(r"^Tag:\s*(\S+)", wheel, re.MULTILINE)
    if "Root-Is-Purelib: false" in wheel or any(not t.endswith("-none-any") for t in tags):
        return True
    return any(str(f).endswith(EXTENSIONS) for f in dist.files or [])


def test_every_compiled_dependency_is_one_termux_provides() -> None:
    installed = runtime_distributions()
    assert {"paramiko", "typer", "rich", "pyyaml"} <= set(installed)
    native = sorted(name for name, dist in installed.items() if is_native(dist))
    unknown = [name for name in native if name not in NATIVE_ON_TERMUX]
    assert not unknown, (
        f"{', '.join(unknown)} compile(s) on install and Termux provides no package for it: "
        "a phone controller could not install miyabi-ctl (pick a release without it, or "
        "add it here with where Termux provides it, and to docs/platforms.md)")


def test_the_pure_python_check_tells_them_apart() -> None:
    installed = runtime_distributions()
    assert is_native(installed["cryptography"]) and is_native(installed["bcrypt"])
    assert not is_native(installed["paramiko"]) and not is_native(installed["rich"])


def test_typer_range_excludes_the_release_that_requires_pydantic() -> None:
    """typer 0.29 requires pydantic, whose pydantic-core is Rust with no wheel for Termux."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    typer = next(Requirement(r) for r in declared if Requirement(r).name == "typer")
    assert typer.specifier.contains("0.28.0") and not typer.specifier.contains("0.29.0")
    assert "pydantic" not in {canonicalize_name(Requirement(r).name)
                              for r in importlib.metadata.requires("typer") or []}


def test_the_controller_docs_install_every_package_the_list_needs() -> None:
    """docs/platforms.md's `pkg install` line names every Termux package above, and each
    compiled dependency with where it comes from."""
    text = (ROOT / "docs" / "platforms.md").read_text()
    section = text.split("## The controller", 1)[1].split("\n## ", 1)[0]
    pkg_lines = [line for line in section.splitlines() if line.strip().startswith("pkg install")]
    assert pkg_lines, "docs/platforms.md#the-controller has no `pkg install` line"
    named = {word for line in pkg_lines for word in line.split()[2:]}
    needed = {p for entry in NATIVE_ON_TERMUX.values() for p in entry.packages}
    assert needed <= named, f"missing from the pkg install line: {sorted(needed - named)}"
    for name in NATIVE_ON_TERMUX:
        assert f"`{name}`" in section.lower(), f"docs/platforms.md does not say where {name} comes from"
