"""What the README says about dependency versions is what pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

ROOT = Path(__file__).resolve().parent.parent


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return {Requirement(line).name: Requirement(line) for line in lines}


def quoted_in_readme() -> list[Requirement]:
    """Inline code in the README that is a requirement with a version range or pin."""
    found = []
    for text in re.findall(r"`([^`\n]+)`", (ROOT / "README.md").read_text()):
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.specifier:
            found.append(requirement)
    return found


def test_every_version_range_the_readme_quotes_is_the_one_pyproject_declares():
    packages = declared()
    # Config comparisons such as `max_batch_size>0` parse as requirements too.
    ranges = [r for r in quoted_in_readme() if r.name in packages]
    assert any(r.name == "flwr" for r in ranges)  # the README does quote one
    for requirement in ranges:
        wanted = packages[requirement.name].specifier
        message = f"README says {requirement}, pyproject.toml says {packages[requirement.name]}"
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        if pins and len(requirement.specifier) == 1:  # one release to install: in the range
            assert wanted.contains(pins[0]), message
        else:
            assert requirement.specifier == wanted, message
