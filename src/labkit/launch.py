"""The set-up block that opens every lab's first code cell, and the command that writes it.

A lab opened from its launch button (Colab, Binder, any Jupyter without the course's
package) must install the course's package from the course's repository, never from the
package index: the name ``labkit`` there belongs to an unrelated project. The block is
rendered from one template with the repository URL from ``_config.yml`` (the same value the
book's launch buttons use) and the pinned ref beside it, so one edit there and one command
change every lab:

    python -m labkit.launch apply [LAB ...]       write the block into the source labs (default: all)
    python -m labkit.launch apply --regenerate    ... and regenerate the student copy of each lab it changed
    python -m labkit.launch check                 exit 1 naming each lab whose block is out of date
    python -m labkit.launch show                  print the block

Run it with the course environment's bin/ on PATH (nbgrader calls alembic by name).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BEGIN = "# --- course set-up: the same in every lab (python -m labkit.launch writes it; edit it there) ---\n"
END = "# --- end of course set-up ---\n\n"

# The block as the learner sees it. It runs before any other import, so it uses the standard
# library only. {repository} and {ref} come from _config.yml.
TEMPLATE = BEGIN + '''\
# Where the course's package is missing (Colab, Binder, a bare Jupyter) this installs it from the
# course's repository at a pinned release and prepares the offline models (a few minutes, once
# per runtime). In the course's own environment, in CI and under the autograder it does nothing.
def _course_setup(repository="{repository}", ref="{ref}"):
    import importlib.metadata
    import importlib.util
    import os
    import re
    import subprocess
    import sys
    try:
        if importlib.util.find_spec("labkit.launch"):  # the course's labkit, not the index's namesake
            return
    except ImportError:
        pass
    if os.path.isdir("../../.venv") and os.path.isdir("../../src/labkit"):
        raise RuntimeError("This notebook sits in a course checkout, but this kernel is not the course's: "
                           "choose the .venv kernel (start JupyterLab with .venv/bin/jupyter lab).")
    if os.environ.get("NBGRADER_EXECUTION"):
        raise RuntimeError("The grading environment lacks the course's package: install the course "
                           "there (bash .ci/setup) and grade again; nothing is installed while grading.")
    if re.search(r"<|>|OWNER|REPOSITORY|your-", repository):
        raise RuntimeError(f"This copy of the course names no repository ({{repository}}): set repository.url "
                           "in _config.yml and run `python -m labkit.launch apply` before publishing it.")
    loaded = {{dist for name, dists in importlib.metadata.packages_distributions().items()
              if name in sys.modules for dist in dists}}

    def versions():
        found = {{}}
        for dist in loaded:
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
        return found

    before = versions()
    print(f"Installing the course's package from {{repository}} at {{ref}} (a few minutes, once per runtime)")
    for step in ([sys.executable, "-m", "pip", "install", "--quiet", "--no-color", f"labkit[colab] @ git+{{repository}}@{{ref}}"],
                 [sys.executable, "-m", "labkit.course.cli", "prepare", "--install"]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"`{{' '.join(step[2:])}}` failed (exit {{done.returncode}}); its last lines:\\n"
                               f"{{(done.stdout + done.stderr)[-2000:]}}\\nFix what they name (no internet in this "
                               "runtime, a ref missing from the repository) and run this cell again; your edits are kept.")
        print(done.stdout[-1500:], end="")
    importlib.invalidate_caches()
    replaced = sorted(dist for dist, version in versions().items() if before.get(dist) != version)
    if replaced:
        raise RuntimeError("Restart the runtime once (Colab: Runtime > Restart session), then run the notebook again: "
                           f"the install upgraded {{', '.join(replaced)}}, already loaded here; your edits are kept.")


_course_setup()
del _course_setup
''' + END

# Old notebooks stopped with this block when labkit was missing; the set-up block replaces it.
LEGACY_IMPORT = re.compile(r"try:\n    import labkit\nexcept ImportError as error:\n(?:    .*\n)+?    \) from error\n")

PLACEHOLDER = re.compile(r"<|>|OWNER|REPOSITORY|your-|example\.(com|org)")  # as the block itself checks, and example hosts
GITHUB_URL = re.compile(r"https://github\.com/[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
PINNED_REF = re.compile(r"v\d+(\.\d+)*([a-z0-9.+-]*)|[0-9a-f]{40}")


class LaunchError(ValueError):
    """The repository or ref in _config.yml cannot serve as an install source."""


@dataclass(frozen=True)
class Source:
    repository: str   # repository.url in _config.yml
    ref: str          # launch_install_ref in _config.yml: a release tag or a full commit id

    @property
    def requirement(self) -> str:
        return f"labkit[colab] @ git+{self.repository}@{self.ref}"


def course_root() -> Path:
    """The checkout this module belongs to (src/labkit/launch.py -> the repository's root)."""
    return Path(__file__).resolve().parents[2]


def read_source(root: Path | None = None) -> Source:
    """The repository and ref from ``_config.yml``, checked: a public GitHub URL, no placeholder,
    and a ref that names one release (a tag like v0.1.0 or a 40-digit commit), not a branch."""
    import yaml

    config_path = (root or course_root()) / "_config.yml"
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise LaunchError(f"{config_path} is missing: run this from a checkout of the course") from error
    repository = str((config.get("repository") or {}).get("url") or "")
    ref = str(config.get("launch_install_ref") or "")
    return validate(Source(repository, ref))


def validate(source: Source) -> Source:
    if not source.repository or PLACEHOLDER.search(source.repository):
        raise LaunchError(f"repository.url in _config.yml is a placeholder ({source.repository!r}): "
                          "set it to the public URL of your copy of the course")
    if not GITHUB_URL.fullmatch(source.repository):
        raise LaunchError(f"repository.url {source.repository!r} is not https://github.com/OWNER/NAME: the book's "
                          "launch buttons and the install block both need a GitHub repository")
    if not PINNED_REF.fullmatch(source.ref):
        raise LaunchError(f"launch_install_ref in _config.yml is {source.ref!r}: name one release, a tag such as "
                          "v0.1.0 or a full 40-digit commit id, so every learner installs the same code")
    return source


def render(repository: str, ref: str) -> str:
    """The block for an install source; the Colab-route test renders one for a local clone."""
    return TEMPLATE.format(repository=repository, ref=ref)


def first_code_cell(notebook: dict) -> dict:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            return cell
    raise LaunchError("the notebook has no code cell")


def with_block(code: str, block: str) -> str:
    """``code`` (a first cell's source) starting with ``block``: an older block is replaced, and
    the old stop-if-missing import becomes a plain one."""
    if code.startswith(BEGIN):
        end = code.find(END)
        if end < 0:
            raise LaunchError("the first cell opens the set-up block but never closes it")
        rest = code[end + len(END):]
    else:
        rest = LEGACY_IMPORT.sub("import labkit\n", code)
    return block + rest


def apply_to(path: Path, block: str) -> bool:
    """Write ``block`` into the first code cell of the notebook at ``path``; True if it changed."""
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    cell = first_code_cell(notebook)
    code = "".join(cell["source"])
    new = with_block(code, block)
    if new == code:
        return False
    cell["source"] = new.splitlines(keepends=True)
    out = json.dumps(notebook, indent=1, ensure_ascii=False) + ("\n" if text.endswith("\n") else "")
    path.write_text(out, encoding="utf-8")
    return True


def source_labs(root: Path) -> list[Path]:
    return sorted((root / "autograder" / "source").glob("phase*/*.ipynb"))


def block_in(path: Path) -> str:
    """The set-up block a notebook's first code cell starts with ('' if none)."""
    code = "".join(first_code_cell(json.loads(path.read_text(encoding="utf-8")))["source"])
    if not code.startswith(BEGIN) or END not in code:
        return ""
    return code[:code.find(END) + len(END)]


class MemoryShortage(RuntimeError):
    """The runtime has less memory than the lab needs (Binder gives each session 1 to 2 GiB)."""


def memory_limit_gib() -> float:
    """The memory this runtime may use, in GiB: the smallest of Binder's MEM_LIMIT, the
    container's cgroup limit (v2 or v1) and the machine's total."""
    import psutil

    limits = [psutil.virtual_memory().total]
    if os.environ.get("MEM_LIMIT", "").isdigit():
        limits.append(int(os.environ["MEM_LIMIT"]))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # cgroup v1 writes a huge number for "no limit"
            limits.append(int(text))
    return min(limits) / 2**30


def require_memory(gib: float, what: str) -> None:
    """Stop at the top of a lab, before any work, where the runtime cannot hold what it runs."""
    have = memory_limit_gib()
    if have < gib:
        where = " (a Binder session gets 1 to 2 GiB)" if os.environ.get("BINDER_LAUNCH_HOST") or os.environ.get("MEM_LIMIT") else ""
        raise MemoryShortage(f"This lab needs about {gib:g} GiB of memory for {what}; this runtime has {have:.1f} GiB{where}. "
                             "Run it on your own machine (bash .ci/setup) or on Colab; your edits in this notebook are kept.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["apply", "check", "show"])
    parser.add_argument("notebooks", nargs="*", type=Path, help="source labs (default: every one)")
    parser.add_argument("--regenerate", action="store_true",
                        help="after apply, regenerate the student copies of the labs it changed with nbgrader")
    args = parser.parse_intermixed_args(argv)
    root = course_root()
    try:
        source = read_source(root)
    except LaunchError as error:
        print(error, file=sys.stderr)
        return 2
    block = render(source.repository, source.ref)
    if args.action == "show":
        print(block, end="")
        return 0
    labs = [p.resolve() for p in args.notebooks] or source_labs(root)
    missing = [str(p) for p in labs if not p.is_file()]
    if missing:
        print("no such notebook: " + ", ".join(missing), file=sys.stderr)
        return 2
    if args.action == "check":
        stale = [p for p in labs if block_in(p) != block]
        for path in stale:
            print(f"out of date: {path}")
        return 1 if stale else 0
    changed = [p for p in labs if apply_to(p, block)]
    for path in changed:
        print(f"updated: {path}")
    if args.regenerate:
        env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        for path in changed:
            command = ["nbgrader", "generate_assignment", path.parent.name, "--force", "--notebook", path.stem]
            done = subprocess.run(command, cwd=root / "autograder", env=env)
            if done.returncode:
                print(f"nbgrader failed on {path.name}: {' '.join(command)}", file=sys.stderr)
                return done.returncode
    print(f"{len(changed)} of {len(labs)} labs changed; install source: {source.requirement}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
