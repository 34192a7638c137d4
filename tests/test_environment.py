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
