"""Run each submission's kernel in a sandbox while ``nbgrader autograde`` grades it.

``SandboxedExecute`` takes the place of nbgrader's ``Execute`` preprocessor in
``autograder/nbgrader_config.py``, so the instructor still runs nbgrader's own commands.
It starts every kernel through bubblewrap (Debian's ``bubblewrap`` package):

- its own user, network, process, IPC and hostname namespaces, as an unprivileged user with
  no capabilities; loopback inside is its own, so a lab's servers (vLLM, PostgreSQL,
  Prometheus, uvicorn) still start and talk to the kernel, and nothing outside, 127.0.0.1
  of the grading machine included, can be reached; the one way out is the grading run's
  model-server socket (``labkit.course.shared_servers``), bound in when the run shares servers;
- a read-only view of the system, the Python environment, the ``labkit`` package and the
  offline models; nothing of the course folder except the submission's own graded copy,
  so the solutions, the hidden tests, the gradebook and other learners' files are absent;
- writes only to that graded copy's folder, a private ``/tmp`` and a private home (both
  in memory), and private copies of the model caches a lab writes to;
- limits on CPU time, file size and open files (``prlimit``), and on memory and the number
  of processes and threads (a cgroup, where the grading account may create one); output a
  cell prints beyond a bound is dropped before it reaches the graded notebook.

The kernel talks to nbgrader over Unix sockets in a folder made for that kernel alone.
Before each graded test cell, a guard puts back what tests call (builtins, ``math``, numpy's
comparisons, IPython's transformers and hooks) as they were when the kernel started.
Where no sandbox can start, grading refuses with the reason unless the instructor passes
``--SandboxedExecute.allow_unsandboxed=True``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.util import run_sync
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, List, Unicode

from labkit import serving

from . import nbmeta

# Cache entries a lab writes to while it runs: each kernel gets its own copy, so one
# submission cannot plant anything that another submission's run would read.
MUTABLE_CACHE = ("embeddings.sqlite", "vllm-cache", "torch-compile-cache", "adapters")
# System folders every kernel may read.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/sys")
# Files under those that a kernel never needs (it runs as root where the grader does).
HIDDEN_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers")
# The user a kernel runs as inside its sandbox: "nobody" on Debian. Not root, so tools that
# behave differently for root (pgserver, PostgreSQL) run as they do for a learner.
SANDBOX_UID = 65534


class SandboxUnavailable(RuntimeError):
    """No sandbox can start on this machine; the message says why and what to do."""


@dataclass
class Limits:
    cpu_seconds: int = 3600
    memory_mb: int = 16384
    processes: int = 1024  # threads count too: torch and vLLM start many
    file_mb: int = 2048
    open_files: int = 4096


@dataclass
class Plan:
    """What one sandboxed kernel may see and use."""
    scratch: Path  # the graded copy's folder: the only course folder it sees, writable
    kernel_dir: Path  # connection file and sockets, and the private caches
    limits: Limits = field(default_factory=Limits)
    readable: list[str] = field(default_factory=list)  # extra read-only paths
    cgroups: dict[str, Path] = field(default_factory=dict)  # {controller: cgroup folder}
    bwrap: str = "bwrap"
    shared_servers: Path | None = None  # the grading run's model-server folder: only its socket is bound


def bwrap(name: str = "bwrap") -> str | None:
    return shutil.which(name)


def probe(name: str = "bwrap") -> str:
    """'' when a bubblewrap sandbox with its own namespaces starts here, else why not."""
    path = bwrap(name)
    if path is None:
        return (f"bubblewrap ({name}) is not installed (Debian, Ubuntu: apt-get install bubblewrap; "
                "bash .ci/setup installs it when run as root)")
    try:
        result = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                                capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "bubblewrap did not start within 30 s"
    if result.returncode != 0:
        return (f"bubblewrap cannot create namespaces here ({result.stderr.strip()[:200]}): allow unprivileged "
                "user namespaces (sysctl kernel.unprivileged_userns_clone=1 on Debian) or run as root")
    return ""


def _cgroup_mounts() -> dict[str, Path]:
    """{controller: folder of this process's own cgroup} for the memory and pids controllers
    where this account may create a child cgroup (cgroup v1 or v2); empty where it may not."""
    found: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in ("memory", "pids"):
            if controller in controllers.split(","):
                folder = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
                if not folder.is_dir():  # a namespaced cgroup shows its own root as "/"
                    folder = Path("/sys/fs/cgroup") / controller
                if os.access(folder, os.W_OK):
                    found[controller] = folder
        if controllers == "" and not found:  # cgroup v2: one tree, controllers in a file
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            try:
                enabled = (folder / "cgroup.subtree_control").read_text().split()
            except OSError:
                continue
            if os.access(folder, os.W_OK):
                for controller in ("memory", "pids"):
                    if controller in enabled:
                        found[controller] = folder
    return found


def make_cgroups(name: str, limits: Limits) -> dict[str, Path]:
    """Child cgroups that cap memory and process count, or {} where none can be made."""
    made: dict[str, Path] = {}
    for controller, parent in _cgroup_mounts().items():
        folder = parent / name
        try:
            folder.mkdir(exist_ok=True)
            if controller == "memory":
                v1 = folder / "memory.limit_in_bytes"
                target = v1 if v1.exists() else folder / "memory.max"
                target.write_text(str(limits.memory_mb * 2**20))
                swap = folder / ("memory.memsw.limit_in_bytes" if v1.exists() else "memory.swap.max")
                if swap.exists():
                    try:
                        swap.write_text(str(limits.memory_mb * 2**20) if v1.exists() else "0")
                    except OSError:
                        pass
            else:
                (folder / "pids.max").write_text(str(limits.processes))
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        made[controller] = folder
    return made


def remove_cgroups(folders: list[Path]) -> None:
    """Kill whatever still runs in these cgroups, then remove them."""
    for folder in folders:
        for _ in range(50):
            try:
                pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        try:
            folder.rmdir()
        except OSError:
            pass


def _python_paths() -> list[str]:
    import labkit

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.realpath(sys.prefix),
             os.path.realpath(sys.base_prefix), str(Path(labkit.__file__).resolve().parent)}
    return sorted(paths)


def _cache_binds(plan: Plan, home: Path) -> list[str]:
    """Read-only binds of the offline models, and private copies of the entries labs write to."""
    from labkit.config import cache_dir

    args = []
    cache = cache_dir()
    private = plan.kernel_dir / "cache"
    private.mkdir(exist_ok=True)
    args += ["--bind", str(private), str(cache)]
    for entry in sorted(cache.iterdir()):
        if entry.name in MUTABLE_CACHE:
            copy = private / entry.name
            if entry.is_dir():
                shutil.copytree(entry, copy, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, copy)
        else:
            args += ["--ro-bind", str(entry), str(cache / entry.name)]
    for name in (".cache/matplotlib", ".cache/huggingface", ".config/matplotlib"):
        if (home / name).exists():
            args += ["--ro-bind", str(home / name), str(home / name)]
    return args


def command(kernel_cmd: list[str], plan: Plan) -> list[str]:
    """``kernel_cmd`` wrapped in bubblewrap, prlimit and (where made) the cgroups."""
    home = Path.home()
    args = [plan.bwrap, "--die-with-parent", "--unshare-all", "--hostname", "sandbox"]
    # Inside, the kernel is the unprivileged user SANDBOX_UID (the grader's own account outside,
    # so its files there belong to the grader), with no capabilities: nothing can be remounted.
    args += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    for path in SYSTEM:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in HIDDEN_FILES:
        if os.path.isfile(path):
            args += ["--ro-bind", "/dev/null", path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", str(home)]
    binds = []
    for path in _python_paths() + list(plan.readable):
        if os.path.exists(path):
            binds += ["--ro-bind", path, path]
    for path in SYSTEM + tuple(_python_paths()) + tuple(plan.readable):
        if plan.scratch.is_relative_to(Path(path).resolve()):
            raise SandboxUnavailable(f"the course folder lies inside {path}, which every sandbox may read, so "
                                     "learners could read the solutions and the gradebook: move the course elsewhere")
    binds += _cache_binds(plan, home)
    binds += ["--bind", str(plan.kernel_dir), str(plan.kernel_dir), "--bind", str(plan.scratch), str(plan.scratch)]
    if plan.shared_servers is not None:  # the broker's socket alone, at the path the kernel is told
        broker = plan.shared_servers / serving.BROKER_SOCKET
        binds += ["--bind", str(broker), str(broker)]
        args += ["--setenv", serving.SHARED_SERVERS_ENV, str(plan.shared_servers)]
    else:
        args += ["--unsetenv", serving.SHARED_SERVERS_ENV]
    # bubblewrap makes the folders above a bind private (0700); pgserver, run as root, hands its
    # binaries to its own user and needs them open to others, as they are outside.
    above = sorted({str(parent) for i, arg in enumerate(binds) if arg in ("--bind", "--ro-bind")
                    for parent in Path(binds[i + 2]).parents if str(parent) not in ("/", "/tmp", "/run", str(home))},
                   key=lambda p: (p.count("/"), p))
    for folder in above:
        args += ["--perms", "0755", "--dir", folder]
    args += binds
    args += ["--chdir", str(plan.scratch),
             "--setenv", "HOME", str(home), "--setenv", "TMPDIR", "/tmp", "--unsetenv", "JPY_PARENT_PID",
             "--remount-ro", "/"]  # the sandbox's own root: no writes outside the folders above
    limits = plan.limits
    prlimit = ["prlimit", f"--cpu={limits.cpu_seconds}", f"--fsize={limits.file_mb * 2**20}",
               f"--nofile={limits.open_files}", "--core=0"]
    # Without a cgroup, the nearest per-process limits (RLIMIT_NPROC does not bind root). The data
    # limit counts what a process writes to, not the address space torch and vLLM reserve.
    if "memory" not in plan.cgroups:
        prlimit.append(f"--data={limits.memory_mb * 2**20}")
    if "pids" not in plan.cgroups:
        prlimit.append(f"--nproc={limits.processes}")
    # The kernel manager interrupts a cell with SIGINT to the whole process group: bubblewrap
    # must ignore it (the kernel sets its own handler while a cell runs). The cgroups are
    # joined first, so every process the kernel starts is counted in them.
    steps = ["trap '' INT"] + [f'echo $$ > "{folder / "cgroup.procs"}"' for folder in sorted(set(plan.cgroups.values()))]
    return ["/bin/sh", "-c", " && ".join(steps) + ' && exec "$@"', "sandbox", *args, "--", *prlimit, "--", *kernel_cmd]


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel starts inside the sandbox, reached over Unix sockets."""

    plan: Plan | None = None
    limits: Limits = Limits()
    readable: list[str] = []
    bwrap_path: str = "bwrap"

    async def _async_pre_start_kernel(self, **kw):
        self._remove_plan()  # a restart gets a fresh folder and cgroups
        kernel_dir = Path(tempfile.mkdtemp(prefix="labkit-sandbox-"))
        os.chmod(kernel_dir, 0o700)
        self.transport = "ipc"
        self.connection_file = str(kernel_dir / "kernel.json")
        self.ip = str(kernel_dir / "kernel-ipc")
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        scratch = Path(kw.get("cwd") or os.getcwd()).resolve()
        shared = (kw.get("env") or os.environ).get(serving.SHARED_SERVERS_ENV, "").strip()
        shared_folder = Path(shared) if shared and shared != "off" else None
        if shared_folder is not None and not (shared_folder / serving.BROKER_SOCKET).is_socket():
            shared_folder = None  # no grading run listens there: the kernel starts its own servers
        self.plan = Plan(scratch, kernel_dir, self.limits, list(self.readable),
                         make_cgroups(kernel_dir.name, self.limits), self.bwrap_path, shared_folder)
        return command(kernel_cmd, self.plan), kw

    def _remove_plan(self) -> None:
        if self.plan is not None:
            remove_cgroups(sorted(set(self.plan.cgroups.values())))
            shutil.rmtree(self.plan.kernel_dir, ignore_errors=True)
            self.plan = None

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        self._remove_plan()


# Run silently before the first cell: keeps the originals of what tests call.
GUARD_SNAPSHOT = r"""
def _labkit_guard():
    import builtins, math, operator, sys
    saved = {}
    def keep(module):
        saved[module.__name__] = (module, dict(vars(module)))
    for module in (builtins, math, operator):
        keep(module)
    try:
        import numpy, numpy.testing
        keep(numpy); keep(numpy.testing)
    except ImportError:
        pass
    shell = get_ipython()
    transformers = {name: list(getattr(shell, name)) for name in
                    ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")}
    classes = [type(shell)] + list(type(shell).__mro__[1:4])
    methods = {cls: dict(vars(cls)) for cls in classes}
    # The builtins restore() calls are bound now, so a patched builtin cannot stop it.
    def restore(setattr=setattr, getattr=getattr, delattr=delattr, vars=vars, list=list, object=object,
                isinstance=isinstance, str=str):
        for module, original in saved.values():
            namespace = vars(module)
            for name, value in original.items():
                if namespace.get(name, object()) is not value:
                    setattr(module, name, value)
            sys.modules[module.__name__] = module
        for name, value in transformers.items():
            getattr(shell, name)[:] = value
        for cls, original in methods.items():
            for name, value in original.items():
                if name in vars(cls) and vars(cls)[name] is not value and not name.startswith('__'):
                    setattr(cls, name, value)
        for name in list(vars(shell)):
            if name in ('showtraceback', 'showsyntaxerror', 'run_cell', 'run_cell_async', 'run_ast_nodes', 'run_code'):
                delattr(shell, name)
        for event in shell.events.callbacks:
            shell.events.callbacks[event][:] = [c for c in shell.events.callbacks[event]
                                                if getattr(c, '__module__', '').startswith(('IPython', 'ipykernel', 'matplotlib'))]
        shell.custom_exceptions = ()
    return restore
_labkit_restore = _labkit_guard()
del _labkit_guard
"""
# Called as a user expression, which IPython evaluates without the input transformers a
# submission may have added.
GUARD_RESTORE = "_labkit_restore()"


class SandboxedExecute(Execute):
    """nbgrader's Execute, with each kernel started in the sandbox and each cell's output capped."""

    sandbox = Bool(True, help="Start every kernel in a bubblewrap sandbox.").tag(config=True)
    allow_unsandboxed = Bool(
        False, help="Grade without a sandbox where none can start (learners' code then runs with your rights)."
    ).tag(config=True)
    cpu_seconds = Integer(Limits.cpu_seconds, help="CPU seconds each process in the sandbox may use.").tag(config=True)
    memory_mb = Integer(Limits.memory_mb, help="Memory for the whole sandbox, in MiB.").tag(config=True)
    processes = Integer(Limits.processes, help="Processes and threads in the whole sandbox.").tag(config=True)
    file_mb = Integer(Limits.file_mb, help="Largest file the sandbox may write, in MiB.").tag(config=True)
    output_kb = Integer(4096, help="Output kept per cell, in KiB; the rest is dropped.").tag(config=True)
    readable = List(Unicode(), help="More paths the sandbox may read.").tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap command.").tag(config=True)
    guard = Bool(True, help="Put back what tests call (builtins, math, numpy, IPython's hooks) "
                            "before each graded test cell.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._sandboxed = False
        self._guard_ready = False
        if self.sandbox:
            problem = probe(self.bwrap)
            if problem and not self.allow_unsandboxed:
                raise SandboxUnavailable(
                    f"no sandbox can start on this machine: {problem}. Learners' code would run with your "
                    "rights, so grading stops here. To grade without a sandbox anyway, pass "
                    "--SandboxedExecute.allow_unsandboxed=True to nbgrader autograde.")
            if problem:
                self.log.warning("grading WITHOUT a sandbox, as asked: %s", problem)
            else:
                self._sandboxed = True
                self.kernel_manager_class = SandboxedKernelManager
                self.log.info("running the notebook in a sandbox (bubblewrap, %s MiB, %s processes, %s CPU s)",
                              self.memory_mb, self.processes, self.cpu_seconds)
        try:
            return super().preprocess(nb, resources, km=km)
        finally:  # a kernel that died (out of memory, killed) skips the manager's own clean-up
            for manager in getattr(self, "_managers", []):
                manager._remove_plan()
            self._managers = []

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            km.limits = Limits(self.cpu_seconds, self.memory_mb, self.processes, self.file_mb)
            km.readable = list(self.readable)
            km.bwrap_path = bwrap(self.bwrap) or self.bwrap
            self._managers = [*getattr(self, "_managers", []), km]
        return km

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._output_bytes = 0
        if self.guard and cell.cell_type == "code":
            if not getattr(self, "_guard_ready", False) or cell_index == 0:
                await self._run_quietly(GUARD_SNAPSHOT)
                self._guard_ready = True
            if nbmeta.is_graded_test(cell):
                await self._run_quietly("", {"guard": GUARD_RESTORE})
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    execute_cell = run_sync(async_execute_cell)  # nbconvert calls the synchronous name

    async def _run_quietly(self, code: str, expressions: dict | None = None) -> None:
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False,
                                 user_expressions=expressions or {})
        await self.async_wait_for_reply(msg_id, None)

    def output(self, outs, msg, display_id, cell_index):
        size = len(str(msg.get("content", {}).get("text", ""))) + len(str(msg.get("content", {}).get("data", "")))
        self._output_bytes = getattr(self, "_output_bytes", 0) + size
        limit = self.output_kb * 1024
        if self._output_bytes > limit and msg["msg_type"] in ("stream", "display_data", "execute_result"):
            if self._output_bytes - size <= limit:
                outs.append(self._dropped_note(limit))
            return None
        return super().output(outs, msg, display_id, cell_index)

    @staticmethod
    def _dropped_note(limit: int):
        from nbformat.v4 import new_output

        return new_output("stream", name="stderr",
                          text=f"[grader: this cell printed more than {limit // 1024} KiB; the rest was dropped]\n")
