"""constraints.txt, the pins `make install`, `make test` and the container image install
with: every run-time dependency pinned, each pin allowed by pyproject.toml, and the
versions this suite runs on the pinned ones (so the image ships what was tested)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert "==" in line, f"not a pin: {line!r}"
        name, version = line.split("==")
        assert canonicalize_name(name) not in found, f"pinned twice: {name}"
        found[canonicalize_name(name)] = Version(version)
    return found


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether `requirement` holds here (Python version, platform) for those extras."""
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""})


def closure(requirements: list[Requirement]) -> set[str]:
    """The distributions the requirements pull in here, transitive ones included."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(requirement, set[str]()) for requirement in requirements]
    while todo:
        requirement, parent_extras = todo.pop()
        if not _applies(requirement, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        todo.extend(
            (Requirement(text), set(requirement.extras)) for text in metadata.requires(name) or []
        )
    return {name for name, _ in seen}


def test_every_runtime_dependency_is_pinned_within_what_pyproject_allows() -> None:
    pinned = pins()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside pyproject's "
            f"{requirement.specifier}: run `make lock`"
        )


def test_the_transitive_dependencies_are_pinned_too() -> None:
    missing = closure(runtime_requirements()) - set(pins())
    assert not missing, f"not pinned (run `make lock`): {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(closure(runtime_requirements())))
def test_the_suite_runs_on_the_pinned_version(name: str) -> None:
    """`make test` installs with the constraints: a mismatch means the tests ran on a
    version the image would not ship."""
    assert Version(metadata.version(name)) == pins()[name]
