"""The pip route (pyproject.toml) and the conda route (environment.yml) pin the same packages."""
from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pinned |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = {line for line in pip_section if not line.startswith("-")}
    assert conda_pins == pinned, (f"only in pyproject.toml: {sorted(pinned - conda_pins)}; "
                                  f"only in environment.yml: {sorted(conda_pins - pinned)}")
    assert "-e ." in pip_section


def test_taught_packages_are_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    for name in ("torch", "transformers", "peft", "datasets", "nbgrader", "jupyterlab", "jupyter-book"):
        assert any(re.match(rf"{name}(\[[a-z,]+\])?==", dep) for dep in every), f"{name} is not pinned with =="


def test_supported_python_versions_agree_everywhere():
    """pyproject.toml, the README, environment.yml and this interpreter name the same oldest Python."""
    import sys

    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", required)
    assert match, f"requires-python should be a plain lower bound such as '>=3.11', not {required!r}"
    oldest = (3, int(match.group(1)))
    readme = (ROOT / "README.md").read_text()
    named = {tuple(map(int, v)) for v in re.findall(r"Python (3)\.(\d+)", readme)}
    version = f"{oldest[0]}.{oldest[1]}"
    assert f"Python {version} or newer" in readme, f"the README should say Python {version} or newer"
    assert min(named) == oldest, f"the README names Python {sorted(named)}, pyproject.toml {required}"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_python = [d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python\b", d)]
    assert conda_python == [f"python={version}"], \
        f"environment.yml should install the oldest supported Python ({required}), not {conda_python}"
    assert sys.version_info[:2] >= oldest, f"the tests run on Python {sys.version_info[:2]}, below {required}"
