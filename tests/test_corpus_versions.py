"""Lab 3's corpus is the same whichever Python runs it (3.11, 3.12, 3.13: Colab's current and next).

The interpreters' own pydoc_data texts differ (3.12 and 3.13 reworded many topics), so the
course ships one copy and every interpreter reads it.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from labkit import corpus

SHIPPED = ROOT / "src" / "labkit" / "data" / "pydoc_topics.json"
DIGEST = ("import hashlib, json, labkit.corpus as c; "
          "print(hashlib.sha256(json.dumps(c.python_doc_passages(), sort_keys=True).encode()).hexdigest())")


def other_pythons() -> list[str]:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for minor in ("3.11", "3.12", "3.13"):
        under_pyenv = sorted(pyenv.glob(f"{minor}.*/bin/python{minor}"))[-1:]
        on_path = shutil.which(f"python{minor}")
        found += [str(under_pyenv[0])] if under_pyenv else [on_path] if on_path else []
    return found


def test_the_shipped_copy_names_its_source_and_licence():
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert data["source"].startswith("CPython 3.11.") and "pydoc_data.topics" in data["source"]
    assert "Python Software Foundation License" in data["licence"]
    assert data["copyright"].startswith("Copyright (c) 2001 Python Software Foundation")
    assert len(data["topics"]) == 79 and sum(map(len, data["topics"].values())) > 400_000


def test_the_copy_is_what_its_interpreter_ships():
    source = json.loads(SHIPPED.read_text(encoding="utf-8"))["source"]
    if not source.startswith(f"CPython {platform.python_version()},"):
        pytest.skip(f"the copy comes from {source.split(',')[0]}; this is {platform.python_version()}")
    from pydoc_data.topics import topics

    assert corpus.python_doc_topics() == dict(sorted(topics.items()))


def test_lab_3s_corpus_is_the_same_on_every_python():
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no other Python under pyenv")
    here = subprocess.run([sys.executable, "-c", DIGEST], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for python in pythons:
        # -S: the bare interpreter, none of the course's packages; the corpus needs none.
        done = subprocess.run([python, "-S", "-c", DIGEST], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout == here, f"{python} builds a different corpus"
    assert len(pythons) >= 2, f"only {pythons} found; the check needs 3.12 and 3.13 as well"
