"""Execute a lab notebook top to bottom, the way CI and the course tools do.

The notebook on disk is never modified: the executed copy is written elsewhere, so
nothing a learner wrote is overwritten.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .bench import watch_memory


class LabRunError(RuntimeError):
    """A notebook failed to execute; the message names the file, the cell and the fix."""


@dataclass
class LabRun:
    notebook: Path
    executed_copy: Path
    wall_s: float
    peak_mb: float


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_notebook(path, executed_copy=None, timeout: int = 600, quick: bool = True, extra_env=None) -> LabRun:
    """Run every cell of ``path`` in a fresh kernel; raise ``LabRunError`` on the first failure.

    ``timeout`` bounds each cell in seconds. The kernel runs with ``LABKIT_QUICK=1`` unless
    ``quick`` is false. Wall time and peak memory (kernel included) are measured.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:
        raise LabRunError(f"{path} is not a readable notebook ({error.__class__.__name__}: {error}). "
                          "Fix: restore it from git or from the course's notebooks/ folder.") from error
    executed_copy = Path(executed_copy) if executed_copy else path.with_name(f"{path.stem}.executed.ipynb")
    if executed_copy.resolve() == path.resolve():
        raise ValueError("the executed copy must not overwrite the notebook itself")

    env = dict(os.environ, LABKIT_QUICK="1" if quick else "0", **(extra_env or {}))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    old_env = os.environ.copy()
    os.environ.update(env)  # the kernel inherits this process's environment
    start = time.perf_counter()
    try:
        with watch_memory() as memory:
            client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
        failed = next((i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        where = f"cell {failed}" if failed is not None else "a cell"
        raise LabRunError(
            f"{path}: {where} failed: {_first_line(str(error))}\n"
            f"The executed copy with the traceback is at {executed_copy}. "
            f"Fix: open {path.name} in JupyterLab, run that cell and read its error."
        ) from error
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        executed_copy.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed_copy)
    return LabRun(path, executed_copy, time.perf_counter() - start, memory["peak_mb"])
