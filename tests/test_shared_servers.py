"""One model server per grading run: reuse, health, restart, notebooks that stop or pause
their view of it, clean-up, the settings a notebook may ask for, and the way in from a sandbox.
A tiny HTTP server stands in for vLLM."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from labkit import monitoring, serving
from labkit.course import sandbox, shared_servers
from labkit.course.shared_servers import SharedServers

# Answers /health, and on /who which server process answered and how many requests it had.
FAKE = """
import http.server, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
seen = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global seen
        seen += 1
        body = b"ok" if self.path == "/health" else f"{os.getpid()} {seen}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def fake_factory(config: dict) -> serving.ManagedServer:
    port = serving.free_port()
    return serving.ManagedServer("fake", [sys.executable, "-c", FAKE, "--port", str(port), json.dumps(config)],
                                 port, startup_timeout=30)


def who(server: serving.ManagedServer) -> tuple[int, int]:
    """(pid of the process that answered, requests it has seen)."""
    with urllib.request.urlopen(f"{server.base_url}/who", timeout=10) as response:
        pid, seen = response.read().decode().split()
    return int(pid), int(seen)


@pytest.fixture
def broker(tmp_path):
    with SharedServers(tmp_path / "servers", health_timeout=3, factory=fake_factory) as shared:
        yield shared


def view(broker: SharedServers, **config) -> serving.SharedServer:
    return serving.SharedServer(broker.folder, {"served_name": "chat", **config}, startup_timeout=30)


def test_notebooks_asking_for_one_configuration_share_one_server(broker):
    with view(broker, max_num_seqs=4) as first, view(broker, max_num_seqs=4) as second:
        assert first.port != second.port  # each notebook has its own relay
        assert who(first)[0] == who(second)[0]
        assert (first.reused, second.reused) == (False, True) and first.shared_key == second.shared_key
        with view(broker, max_num_seqs=1) as other:
            assert who(other)[0] != who(first)[0] and other.shared_key != first.shared_key
    assert len(broker.starts) == 2
    logged = [json.loads(line) for line in (broker.folder / "starts.jsonl").read_text().splitlines()]
    assert [r["why"] for r in logged] == ["first use", "first use"]


def test_a_notebook_stopping_its_server_leaves_it_running_for_the_next(broker):
    first = view(broker).start()
    pid, _ = who(first)
    first.stop()
    assert not first.running and psutil.pid_exists(pid)
    with view(broker) as second:
        assert who(second)[0] == pid and second.reused
    assert len(broker.starts) == 1


def test_a_dead_server_is_restarted_for_the_next_notebook(broker):
    with view(broker) as first:
        old, _ = who(first)
        os.killpg(os.getpgid(broker.running[first.shared_key].process.pid), signal.SIGKILL)
        time.sleep(0.5)
        with view(broker) as second:
            new, seen = who(second)
            assert new != old and not second.reused and seen <= 4  # a fresh process: health checks, then this
        assert who(first)[0] == new  # an older notebook's next connection reaches the new one too
    assert [r["why"] for r in broker.starts] == ["first use", "dead or unhealthy"]


def test_a_server_that_stops_answering_is_restarted_after_a_bounded_wait(broker):
    with view(broker) as first:
        old, _ = who(first)
        hung = psutil.Process(old)
        hung.suspend()
        try:
            started = time.monotonic()
            with view(broker) as second:
                assert who(second)[0] != old
            assert time.monotonic() - started < 30
        finally:
            if hung.is_running():
                hung.resume()
    assert not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE


def test_pausing_a_notebooks_server_pauses_only_its_own_relay(broker):
    with view(broker) as drilled, view(broker) as other:
        monitoring.pause(drilled)
        try:
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{drilled.base_url}/health", timeout=2)
            assert who(other)[1] > 0  # the shared server still answers everyone else
        finally:
            monitoring.resume(drilled)
        assert who(drilled)[0] == who(other)[0]


def test_the_run_stops_every_server_at_its_end(tmp_path):
    shared = SharedServers(tmp_path / "servers", max_servers=3, factory=fake_factory)
    with shared:
        pids = []
        for seqs in (1, 2):
            with view(shared, max_num_seqs=seqs) as server:
                pids.append(who(server)[0])
        assert shared.socket_path.is_socket() and all(psutil.pid_exists(p) for p in pids)
    time.sleep(0.5)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not shared.socket_path.exists() and not shared.running


def test_at_most_max_servers_run_the_least_recently_used_idle_one_goes(tmp_path):
    with SharedServers(tmp_path / "servers", max_servers=2, factory=fake_factory) as shared:
        for seqs in (1, 2, 3):
            with view(shared, max_num_seqs=seqs):
                pass
            time.sleep(0.05)
        assert len(shared.running) == 2
        with view(shared, max_num_seqs=1) as again:  # the first was stopped, so it starts anew
            assert not again.reused
        assert len(shared.starts) == 4 and len(shared.running) == 2


def test_no_start_beyond_max_servers_while_all_are_in_use(tmp_path):
    with SharedServers(tmp_path / "servers", max_servers=1, factory=fake_factory, room_timeout=2) as shared:
        with view(shared, max_num_seqs=1) as busy:
            held = socket.create_connection(("127.0.0.1", busy.port))  # a request in flight, as far as the broker knows
            try:
                for _ in range(50):
                    if any(e.connections for e in shared._entries.values()):
                        break
                    time.sleep(0.1)
                with pytest.raises(serving.ServerError, match="all in use"):
                    view(shared, max_num_seqs=2).start()
            finally:
                held.close()
        assert len(shared.starts) == 1


def test_bad_settings_are_refused_with_the_reason(broker, tmp_path):
    with pytest.raises(serving.ServerError, match="max_num_seqs"):
        shared_servers.checked_config({"max_num_seqs": "8; rm -rf /", "max_model_len": 2048, "kv_cache_gib": 1})
    with pytest.raises(serving.ServerError, match="no setting"):
        shared_servers.checked_config({"model": "/etc/passwd", "max_model_len": 2048, "kv_cache_gib": 1})
    with pytest.raises(serving.ServerError, match="served_name"):
        shared_servers.checked_config({"served_name": "a b", "max_model_len": 2048, "kv_cache_gib": 1})
    refusing = SharedServers(tmp_path / "strict", health_timeout=3,
                             factory=lambda config: fake_factory(shared_servers.checked_config(config)))
    with refusing, pytest.raises(serving.ServerError, match="could not provide the server.*extra_args"):
        serving.SharedServer(refusing.folder, {"extra_args": ["--tool-parser-plugin", "x.py"]},
                             startup_timeout=20).start()


def test_a_request_after_the_run_ended_gets_an_error_with_the_reason(tmp_path):
    shared = SharedServers(tmp_path / "servers", factory=fake_factory)
    with shared:
        notebook = view(shared).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{notebook.base_url}/who", timeout=10)
        assert refused.value.code == 503 and "broker unreachable" in refused.value.read().decode()
    finally:
        notebook.stop()


def test_without_a_running_broker_the_notebook_is_told_how_to_go_on(tmp_path):
    with pytest.raises(serving.ServerError, match="unset LABKIT_SHARED_SERVERS"):
        serving.SharedServer(tmp_path, {"served_name": "chat"}).start()


def test_vllm_server_shares_only_the_plain_chat_model(monkeypatch, tmp_path):
    monkeypatch.setattr(serving, "vllm_python", lambda: "/venv/bin/python")
    monkeypatch.setenv(serving.SHARED_SERVERS_ENV, str(tmp_path))
    shared = serving.vllm_server(max_num_seqs=8, max_model_len=4096)
    assert isinstance(shared, serving.SharedServer) and shared.config["max_num_seqs"] == 8
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    for own in (serving.vllm_server(lora_adapters={"toolcalls": adapter}),
                serving.vllm_server(extra_args=("--enable-auto-tool-choice",)),
                serving.vllm_server(share=False)):
        assert not isinstance(own, serving.SharedServer) and own.command[0] == "/venv/bin/python"
    monkeypatch.setenv(serving.SHARED_SERVERS_ENV, "off")
    assert not isinstance(serving.vllm_server(), serving.SharedServer)


def test_a_shared_vllm_keeps_nothing_one_submission_could_read(monkeypatch):
    monkeypatch.setattr(serving, "vllm_python", lambda: "/venv/bin/python")
    server = shared_servers.vllm_for({"max_num_seqs": 4, "max_model_len": 2048, "kv_cache_gib": 1})
    assert "--no-enable-prefix-caching" in server.command and "--enable-lora" not in server.command
    assert all(server.env[name] == "0" for name in shared_servers.PRIVATE_ENV)
    same = shared_servers.vllm_for({"max_num_seqs": 4, "max_model_len": 2048, "kv_cache_gib": 1})
    other = shared_servers.vllm_for({"max_num_seqs": 1, "max_model_len": 2048, "kv_cache_gib": 1})
    assert server.port != same.port and shared_servers.server_key(server) == shared_servers.server_key(same)
    assert shared_servers.server_key(other) != shared_servers.server_key(server)


@pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")
def test_a_sandboxed_process_reaches_the_shared_server_only_through_its_socket(broker, tmp_path, monkeypatch):
    """Inside the sandbox a notebook's view of the server answers; the server's own port on the
    grading machine's loopback does not."""
    monkeypatch.setenv(serving.SHARED_SERVERS_ENV, str(broker.folder))
    with serving.vllm_server() as outside:
        pid, _ = who(outside)
        real_port = broker.running[outside.shared_key].port
        scratch, kernel_dir = tmp_path / "scratch", tmp_path / "kernel"
        scratch.mkdir()
        kernel_dir.mkdir()
        probe = ("import json, socket, sys, urllib.request\n"
                 "from labkit import serving\n"
                 "server = serving.vllm_server()\n"
                 "assert isinstance(server, serving.SharedServer)\n"
                 "with server:\n"
                 "    print('VIEW', urllib.request.urlopen(server.base_url + '/who', timeout=10).read().decode())\n"
                 "try:\n"
                 f"    socket.create_connection(('127.0.0.1', {real_port}), timeout=3)\n"
                 "    print('HOST REACHED')\n"
                 "except OSError:\n"
                 "    print('HOST BLOCKED')\n")
        plan = sandbox.Plan(scratch, kernel_dir, shared_servers=broker.folder)
        argv = sandbox.command([sys.executable, "-c", probe], plan)
        env = dict(os.environ, **broker.env())
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"VIEW {pid} " in result.stdout and "HOST BLOCKED" in result.stdout, result.stdout
        bound = [argv[i + 2] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind")]
        assert str(broker.socket_path) in bound
        assert not [p for p in bound if p.startswith(str(broker.folder)) and p != str(broker.socket_path)]


def test_the_command_line_wraps_a_grading_command_and_leaves_nothing(tmp_path):
    script = ("import os, pathlib; folder = pathlib.Path(os.environ['LABKIT_SHARED_SERVERS']); "
              "print('SOCKET', (folder / 'broker.sock').is_socket())")
    result = subprocess.run([sys.executable, "-m", "labkit.course.shared_servers", "--", sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SOCKET True" in result.stdout, result.stderr
    assert "model servers started during this run: 0" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "labkit.course.shared_servers"], capture_output=True, text=True)
    assert missing.returncode == 2 and "name the grading command" in missing.stderr
