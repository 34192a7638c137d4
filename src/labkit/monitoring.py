"""Run a service the way it runs on call: Prometheus, promtool, PromQL, uvicorn, a paused dependency.

Infrastructure for the shipping lab; the service, its metrics, its SLO arithmetic and its
alert rules are the learner's.

- ``PrometheusServer``: a real Prometheus (Debian's ``prometheus`` package) on 127.0.0.1
  with a configuration it writes itself, scraping the targets it is given every second.
  A ``ManagedServer``: bounded start, its log tail in every error, stopped with its block.
  ``query``/``query_range`` speak PromQL over Prometheus's HTTP API.
- ``promtool_test``/``promtool_check_rules``: ``promtool test rules`` and ``check rules``
  on rule files given as text or dicts.
- ``ServiceThread``: uvicorn serving an ASGI app from a background thread of this process,
  with a bounded start and stop.
- ``paused``: stop a managed server's processes (SIGSTOP) and continue them afterwards, so a
  dependency hangs the way a stuck process does, without the cost of a restart.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from .serving import ManagedServer, ServerError, free_port, port_in_use

INSTALL_HINT = ("Install Prometheus (it brings promtool): on Debian or Ubuntu `sudo apt-get install prometheus` "
                "(bash .ci/setup does this when run as root); on macOS `brew install prometheus`; "
                "elsewhere unpack the release from prometheus.io and put its folder on PATH.")


class MonitoringError(RuntimeError):
    """Prometheus, promtool or the service could not do what was asked; the message says why and what to do."""


def find_tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``, or a MonitoringError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MonitoringError(f"`{name}` is not on PATH. {INSTALL_HINT}")
    return path


def prometheus_available() -> bool:
    return shutil.which("prometheus") is not None and shutil.which("promtool") is not None


def _as_yaml(rules) -> str:
    return rules if isinstance(rules, str) else yaml.safe_dump(rules, sort_keys=False)


def prometheus_config(targets: dict[str, str | list[str]], scrape_interval: str = "1s",
                      evaluation_interval: str = "1s", rule_files: list[str] = ()) -> str:
    """A prometheus.yml that scrapes each ``{job: "host:port" or [...]}`` at ``/metrics``."""
    if not targets:
        raise MonitoringError("Prometheus needs at least one target to scrape")
    jobs = []
    for job, hosts in targets.items():
        hosts = [hosts] if isinstance(hosts, str) else list(hosts)
        for host in hosts:
            if host.startswith(("http://", "https://")) or "/" in host:
                raise MonitoringError(f"target {host!r} of job {job!r}: give host:port, without a scheme or path")
        jobs.append({"job_name": job, "scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                     "metrics_path": "/metrics", "static_configs": [{"targets": hosts}]})
    config = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
              "scrape_configs": jobs}
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    return yaml.safe_dump(config, sort_keys=False)


def _run_promtool(args: list[str], folder: Path, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([find_tool("promtool"), *args], cwd=folder, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise MonitoringError(f"promtool {' '.join(args)} did not finish in {timeout:.0f} s") from error


def promtool_check_rules(rules, timeout: float = 30) -> tuple[bool, str]:
    """``promtool check rules`` on a rule file (YAML text or a dict): (passed, promtool's output)."""
    with tempfile.TemporaryDirectory(prefix="promtool-") as folder:
        (Path(folder) / "rules.yml").write_text(_as_yaml(rules))
        result = _run_promtool(["check", "rules", "rules.yml"], Path(folder), timeout)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def promtool_test(rules, tests, timeout: float = 60) -> tuple[bool, str]:
    """``promtool test rules`` with ``rules`` saved as rules.yml and ``tests`` as the test file.

    ``tests`` is a promtool unit-test file (YAML text or a dict) whose ``rule_files`` names
    ``rules.yml``; returns (every test passed, promtool's output).
    """
    test_text = _as_yaml(tests)
    if "rules.yml" not in test_text:
        raise MonitoringError("the test file must list rules.yml under rule_files")
    with tempfile.TemporaryDirectory(prefix="promtool-") as folder:
        (Path(folder) / "rules.yml").write_text(_as_yaml(rules))
        (Path(folder) / "tests.yml").write_text(test_text)
        result = _run_promtool(["test", "rules", "tests.yml"], Path(folder), timeout)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


class PrometheusServer(ManagedServer):
    """A Prometheus server on 127.0.0.1 scraping ``targets`` ({job: "host:port"}), with optional alert rules.

    Everything it writes (prometheus.yml, rules.yml, its database and log) lives in
    ``folder`` (a fresh temporary one by default), so runs never share data.
    """

    health_path = "/-/ready"

    def __init__(self, targets: dict, port: int | None = None, scrape_interval: str = "1s", rules=None,
                 folder: str | Path | None = None, startup_timeout: float = 60, retention: str = "2h"):
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="prometheus-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        rule_files = []
        if rules is not None:
            (self.folder / "rules.yml").write_text(_as_yaml(rules))
            rule_files = [str(self.folder / "rules.yml")]
        self.config_path = self.folder / "prometheus.yml"
        self.config_path.write_text(prometheus_config(targets, scrape_interval, scrape_interval, rule_files))
        port = port or free_port()
        command = [find_tool("prometheus"), f"--config.file={self.config_path}",
                   f"--storage.tsdb.path={self.folder / 'data'}", f"--storage.tsdb.retention.time={retention}",
                   f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"]
        super().__init__("prometheus", command, port, startup_timeout=startup_timeout,
                         log_path=self.folder / "prometheus.log")

    def start(self) -> PrometheusServer:
        ok, output = _check_config(self.config_path)
        if not ok:
            raise MonitoringError(f"promtool rejects the configuration {self.config_path}:\n{output}")
        try:
            super().start()
        except ServerError as error:
            raise MonitoringError(str(error)) from error
        return self

    def _api(self, path: str, params: dict, timeout: float = 10) -> dict:
        url = f"{self.base_url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:  # 400/422: a bad query; the body says why
            text = error.read().decode(errors="replace")
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                body = {"errorType": f"HTTP {error.code}", "error": text[:500]}
        except (urllib.error.URLError, OSError) as error:
            raise MonitoringError(f"Prometheus at {self.base_url} did not answer ({error}).\n"
                                  f"Last lines of its log:\n{self.log_tail(15)}") from error
        if body.get("status") != "success":
            raise MonitoringError(f"Prometheus refused {params.get('query', path)!r}: "
                                  f"{body.get('errorType', '')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query: ``[{"metric": {labels}, "value": float}, ...]`` (empty when nothing matches)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def query_value(self, expr: str, at: float | None = None) -> float | None:
        """The value of a query that yields at most one series; None when it yields none."""
        result = self.query(expr, at)
        if len(result) > 1:
            raise MonitoringError(f"{expr!r} yields {len(result)} series; aggregate it (sum, max ...) to one")
        return result[0]["value"] if result else None

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict]:
        """A range query: ``[{"metric": {labels}, "t": [unix seconds], "v": [floats]}, ...]``."""
        data = self._api("query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                         "step": f"{step:g}"}, timeout=30)
        return [{"metric": r["metric"], "t": [float(t) for t, _ in r["values"]],
                 "v": [float(v) for _, v in r["values"]]} for r in data["result"]]

    def targets(self) -> list[dict]:
        """Each scrape target's job, health ("up", "down", "unknown") and last error."""
        data = self._api("targets", {"state": "active"})
        return [{"job": t["labels"].get("job"), "url": t["scrapeUrl"], "health": t["health"],
                 "last_error": t.get("lastError", "")} for t in data["activeTargets"]]

    def wait_for_targets(self, timeout: float = 30) -> list[dict]:
        """Wait (bounded) until every target has been scraped successfully."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.targets()
            if targets and all(t["health"] == "up" for t in targets):
                return targets
            if time.monotonic() > deadline:
                down = [f"{t['job']} {t['url']}: {t['health']} {t['last_error']}" for t in targets if t["health"] != "up"]
                raise MonitoringError(f"Prometheus could not scrape every target within {timeout:.0f} s:\n" + "\n".join(down))
            time.sleep(0.5)

    def wait_until(self, expr: str, condition=lambda value: value is not None, timeout: float = 60,
                   interval: float = 0.5) -> float:
        """Seconds until ``condition(query_value(expr))`` held; MonitoringError after ``timeout``."""
        start = time.monotonic()
        value = None
        while time.monotonic() - start < timeout:
            value = self.query_value(expr)
            if condition(value):
                return time.monotonic() - start
            time.sleep(interval)
        raise MonitoringError(f"{expr!r} did not reach the expected state within {timeout:.0f} s (last value: {value})")


def _check_config(path: Path) -> tuple[bool, str]:
    result = _run_promtool(["check", "config", str(path)], path.parent, timeout=30)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


# --- uvicorn in a thread ------------------------------------------------------------------

_THREADS: set[ServiceThread] = set()


class ServiceThread:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` from a daemon thread of this process.

    The app's objects (models, indexes, the learner's code) stay in this process; the server
    starts within ``startup_timeout`` seconds or raises, and stops with the ``with`` block.
    """

    def __init__(self, app, port: int | None = None, startup_timeout: float = 20, limit_concurrency: int | None = None):
        self.app, self.port, self.startup_timeout = app, port or free_port(), startup_timeout
        self.limit_concurrency = limit_concurrency
        self.server = None
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceThread:
        import uvicorn

        if port_in_use(self.port):
            raise MonitoringError(f"port {self.port} on 127.0.0.1 is already in use, so the service cannot start "
                                  "there. Fix: stop whatever listens there, or pass port=None to pick a free one.")
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="off", limit_concurrency=self.limit_concurrency, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)

        def serve():
            try:
                self.server.run()
            except BaseException as error:  # uvicorn exits with SystemExit when it cannot bind
                self.failure = error

        self.thread = threading.Thread(target=serve, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        _THREADS.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                why = f"it stopped ({self.failure!r})" if self.failure else f"not started after {self.startup_timeout:.0f} s"
                raise MonitoringError(f"uvicorn could not serve on 127.0.0.1:{self.port}: {why}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10) -> None:
        _THREADS.discard(self)
        if self.server is None or self.thread is None:
            return
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and bool(self.server and self.server.started)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# --- a dependency that hangs ------------------------------------------------------------------

_PAUSED: dict[int, list[int]] = {}


def _server_processes(server: ManagedServer) -> list[int]:
    """The pids of the server proper: everything below the guardian, which must keep running."""
    import psutil

    if not server.running:
        raise MonitoringError(f"the {server.name} server is not running, so it cannot be paused")
    return [p.pid for p in psutil.Process(server.process.pid).children(recursive=True)]


def pause(server: ManagedServer) -> None:
    """Stop the server's processes (SIGSTOP): its port stays open but nothing answers."""
    pids = _server_processes(server)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    _PAUSED[server.process.pid] = pids


def resume(server: ManagedServer) -> None:
    """Continue (SIGCONT) the processes ``pause`` stopped."""
    pids = _PAUSED.pop(server.process.pid if server.process else -1, [])
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@contextmanager
def paused(server: ManagedServer):
    """``with paused(server): ...``: the server hangs inside the block and continues after it, whatever happens."""
    pause(server)
    try:
        yield server
    finally:
        resume(server)


@atexit.register
def _cleanup():
    for pids in list(_PAUSED.values()):  # never leave a stopped process behind
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    _PAUSED.clear()
    for service in list(_THREADS):
        service.stop(timeout=2)
