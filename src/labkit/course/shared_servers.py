"""The model servers of one grading run, started once and shared by the notebooks it grades.

A class of forty would otherwise start one vLLM per graded notebook, and each start takes
minutes on a CPU. ``SharedServers(folder)`` is owned by whatever runs the grading (the
autograder tests, an instructor's grading script): it listens on ``folder/broker.sock``,
and ``labkit.serving.vllm_server()`` in a graded notebook, seeing ``LABKIT_SHARED_SERVERS``,
asks it for a server instead of starting one. The broker

- builds the command itself from a short, checked list of settings (never a command line
  from the notebook), always for the course's chat model, and keys each server by its whole
  command line and environment: one server per configuration;
- checks a server's health with a bounded wait before handing it out, and restarts it if it
  died or stopped answering;
- passes each connection through to the server, so a sandboxed kernel needs nothing but this
  one socket bound into its sandbox, never the grading machine's loopback;
- keeps at most ``max_servers`` running or starting, stopping the least recently used idle one
  first; a start beyond that waits (up to ``room_timeout``) for a server to go idle, then is
  refused, so a notebook cannot make it start a server per setting it can think of; it
  passes at most ``max_connections`` connections at once;
- stops every server when the run ends (and each dies with the run's process if it is killed).

What a shared vLLM keeps between requests, and why one submission cannot read another's:
prefix caching is off (a cached prefix is a timing side channel: a later request could tell
whether an earlier one began with the same text); LoRA adapters are never loaded into a
shared server (a notebook that serves an adapter gets a server of its own, in its own
sandbox), and runtime adapter loading, the development endpoints and the stored-responses API
are switched off. Nothing else outlives a request except the aggregate counters on
``/metrics`` (how many requests and tokens, not what they said); the startup log a notebook
receives ends at the moment the server was ready.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import socketserver
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labkit import serving

# The settings a notebook may choose, and what each may be.
_DTYPES = {None, "auto", "float32", "bfloat16", "float16", "half"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Switched off in every shared vLLM: what could carry one submission's data to another.
PRIVATE_ENV = {"VLLM_SERVER_DEV_MODE": "0", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "0",
               "VLLM_ENABLE_RESPONSES_API_STORE": "0"}
PRIVATE_ARGS = ("--no-enable-prefix-caching",)


def checked_config(config: dict) -> dict:
    """The settings of a shared vLLM server, checked; ServerError names the first that is not allowed."""
    def whole(name, low, high, optional=False):
        value = config.get(name)
        if optional and value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise serving.ServerError(f"shared server setting {name}={value!r}: a whole number from {low} to {high}")
        return value

    unknown = set(config) - {"max_num_seqs", "max_model_len", "kv_cache_gib", "served_name", "dtype", "eager",
                             "gpu_memory_fraction"}
    if unknown:
        raise serving.ServerError(f"shared servers take no setting {sorted(unknown)}")
    if config.get("dtype") not in _DTYPES:
        raise serving.ServerError(f"shared server setting dtype={config.get('dtype')!r}: one of {sorted(filter(None, _DTYPES))}")
    if config.get("eager") not in (None, True, False):
        raise serving.ServerError("shared server setting eager: True, False or None")
    if not isinstance(config.get("served_name", "chat"), str) or not _NAME.match(config.get("served_name", "chat")):
        raise serving.ServerError("shared server setting served_name: letters, digits, '_', '.', '-'")
    fraction = config.get("gpu_memory_fraction")
    if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise serving.ServerError("shared server setting gpu_memory_fraction: above 0, at most 1")
    return {"max_num_seqs": whole("max_num_seqs", 1, 1024, optional=True),
            "max_model_len": whole("max_model_len", 16, 131072), "kv_cache_gib": whole("kv_cache_gib", 1, 64),
            "served_name": config.get("served_name", "chat"), "dtype": config.get("dtype"),
            "eager": config.get("eager"), "gpu_memory_fraction": fraction}


def vllm_for(config: dict) -> serving.ManagedServer:
    """The course's vLLM server for checked settings, with what could leak between submissions off."""
    server = serving.vllm_server(**checked_config(config), extra_args=PRIVATE_ARGS, share=False)
    server.env.update(PRIVATE_ENV)
    return server


def server_key(server: serving.ManagedServer) -> str:
    """Names one configuration: the command line (its port left out) and the environment it adds."""
    command = ["{port}" if arg == str(server.port) else arg for arg in server.command]
    added = {k: v for k, v in server.env.items() if os.environ.get(k) != v}
    return hashlib.sha256(json.dumps([command, sorted(added.items())]).encode()).hexdigest()[:16]


@dataclass
class _Entry:
    key: str
    server: serving.ManagedServer
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0  # open connections passed through to it
    last_used: float = 0.0
    starting: bool = False


class SharedServers:
    """The broker: ``with SharedServers(folder) as shared: run nbgrader with shared.env()``."""

    def __init__(self, folder: str | Path, max_servers: int = 2, health_timeout: float = 60,
                 factory: Callable[[dict], serving.ManagedServer] = vllm_for, max_connections: int = 256,
                 room_timeout: float = 600):
        self.folder = Path(folder)
        self.max_servers, self.health_timeout, self.factory = max_servers, health_timeout, factory
        self.max_connections = max_connections
        self.room_timeout = room_timeout  # how long a start waits for a server to go idle when all slots are taken
        self._entries: dict[str, _Entry] = {}
        self._keys: dict[str, str] = {}  # settings as asked -> key, so a connection skips building the command
        self._lock = threading.Lock()
        self._listener: socketserver.ThreadingUnixStreamServer | None = None
        self.starts: list[dict] = []  # one record per server start, also appended to folder/starts.jsonl

    @property
    def socket_path(self) -> Path:
        return self.folder / serving.BROKER_SOCKET

    def env(self) -> dict[str, str]:
        """What to add to the environment of the grading commands."""
        return {serving.SHARED_SERVERS_ENV: str(self.folder)}

    def __enter__(self) -> SharedServers:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.socket_path.unlink(missing_ok=True)
        broker = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                broker._handle(self.request)

        self._listener = socketserver.ThreadingUnixStreamServer(str(self.socket_path), Handler)
        self._listener.daemon_threads = True
        threading.Thread(target=self._listener.serve_forever, name="shared-servers", daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Stop listening, then stop every server this run started."""
        if self._listener is not None:
            self._listener.shutdown()
            self._listener.server_close()
            self._listener = None
        self.socket_path.unlink(missing_ok=True)
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.server.stop()

    @property
    def running(self) -> dict[str, serving.ManagedServer]:
        return {key: entry.server for key, entry in self._entries.items() if entry.server.running}

    # --- serving one request line ---------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        try:
            line = conn.makefile("rb").readline(65536)
            request = json.loads(line)
            entry, reused = self.ensure(request["config"], check_health=request.get("op") == "ensure")
        except Exception as error:  # the notebook gets the reason instead of a hung socket
            self._reply(conn, {"ok": False, "error": f"{type(error).__name__}: {error}"})
            conn.close()
            return
        if request.get("op") == "ensure":
            server = entry.server
            self._reply(conn, {"ok": True, "key": entry.key, "reused": reused, "started_at": server.started_at,
                               "ready_after_s": server.ready_after_s, "startup_log": self._startup_log(entry)})
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", entry.server.port), timeout=10)
            upstream.settimeout(None)
        except OSError as error:
            self._reply(conn, {"ok": False, "error": f"the shared server does not accept connections: {error}"})
            conn.close()
            return
        with self._lock:
            if sum(e.connections for e in self._entries.values()) >= self.max_connections:
                upstream.close()
                self._reply(conn, {"ok": False, "error": f"more than {self.max_connections} open connections"})
                conn.close()
                return
            entry.connections += 1
        self._reply(conn, {"ok": True})
        try:
            serving.splice(conn, upstream)
        finally:
            with self._lock:
                entry.connections -= 1
                entry.last_used = time.monotonic()

    @staticmethod
    def _reply(conn: socket.socket, answer: dict) -> None:
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass

    # --- starting, checking, restarting ---------------------------------------------------

    def ensure(self, config: dict, check_health: bool = True) -> tuple[_Entry, bool]:
        """The healthy server for ``config`` and whether it was already running; starts or restarts it."""
        asked = json.dumps(config, sort_keys=True)
        with self._lock:
            entry = self._entries.get(self._keys.get(asked, ""))
        if entry is not None and entry.server.running and not check_health:  # the common case: one more connection
            entry.last_used = time.monotonic()
            return entry, True
        server = self.factory(config)
        key = server_key(server)
        with self._lock:
            self._keys[asked] = key
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(key, server)
        with entry.lock:  # one start per configuration; others wait for it
            reused = entry.server.running and (not check_health or self._healthy(entry.server))
            if not reused:
                self._start(entry, server, why="dead or unhealthy" if entry.server.started_at else "first use")
            entry.last_used = time.monotonic()
            return entry, reused

    def _healthy(self, server: serving.ManagedServer) -> bool:
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline and server.running:
            try:
                with urllib.request.urlopen(f"{server.base_url}{server.health_path}", timeout=5) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        return False

    def _start(self, entry: _Entry, fresh: serving.ManagedServer, why: str) -> None:
        entry.server.stop()
        deadline = time.monotonic() + self.room_timeout
        while True:  # notebooks graded in parallel may need more servers than fit: wait for one to go idle
            self._make_room(entry.key)
            with self._lock:
                busy = [e for e in self._entries.values() if e is not entry and (e.server.running or e.starting)]
                if len(busy) < self.max_servers:
                    entry.starting = True
                    break
            if time.monotonic() > deadline:
                raise serving.ServerError(f"the grading run already runs {len(busy)} model servers, all in use "
                                          f"for {self.room_timeout:.0f} s; it starts no more")
            time.sleep(1)
        try:
            entry.server = fresh
            fresh.start()
        finally:
            entry.starting = False
        record = {"key": entry.key, "why": why, "ready_after_s": round(fresh.ready_after_s, 1),
                  "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": fresh.command}
        self.starts.append(record)
        with open(self.folder / "starts.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        (self.folder / f"{entry.key}.json").write_text(json.dumps(
            {"pid": fresh.process.pid, "port": fresh.port, "log": str(fresh.log_path), **record}, indent=1))

    def _make_room(self, key: str) -> None:
        """Stop least recently used idle servers until one more fits."""
        with self._lock:
            others = [e for k, e in self._entries.items() if k != key and e.server.running]
            idle = sorted((e for e in others if e.connections == 0), key=lambda e: e.last_used)
        for entry in idle[:max(0, len(others) - self.max_servers + 1)]:
            if entry.lock.acquire(blocking=False):  # one being started or checked is not idle
                try:
                    entry.server.stop()
                finally:
                    entry.lock.release()

    @staticmethod
    def _startup_log(entry: _Entry) -> str:
        """The server's log up to the moment it was ready: its start, never a request."""
        server = entry.server
        text = server.log_tail(lines=100000)
        mark = text.find("Starting vLLM server on")
        cut = text.find("\n", mark) if mark >= 0 else -1
        return text[:cut] if cut >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    """``python -m labkit.course.shared_servers [--max-servers N] -- COMMAND...``: run COMMAND (such
    as ``nbgrader autograde phase2``) with this run's shared model servers, and stop them after."""
    import argparse
    import subprocess
    import sys
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m labkit.course.shared_servers", description=main.__doc__)
    parser.add_argument("--max-servers", type=int, default=2, help="model servers running at once (about 4 GB each)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the grading command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("name the grading command after --, for example: -- nbgrader autograde phase2")
    with tempfile.TemporaryDirectory(prefix="labkit-servers-") as folder, \
            SharedServers(folder, max_servers=args.max_servers) as shared:
        code = subprocess.run(command, env=dict(os.environ, **shared.env())).returncode
        print(f"model servers started during this run: {len(shared.starts)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
