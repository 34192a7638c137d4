"""labkit.monitoring: Prometheus as a managed process, promtool, PromQL, uvicorn in a thread, a paused server."""
from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from labkit import monitoring
from labkit.serving import ManagedServer, free_port
from lanes import require

needs_prometheus = pytest.mark.usefixtures("prometheus_installed")


@pytest.fixture
def prometheus_installed():
    require(monitoring.prometheus_available(), "Prometheus",
            "apt-get install prometheus (bash .ci/setup does it when run as root)")


def metrics_app():
    """A tiny ASGI app with a counter on /metrics that counts its own scrapes."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    registry = CollectorRegistry()
    scrapes = Counter("demo_scrapes_total", "Times /metrics was read", registry=registry)
    app = FastAPI()

    @app.get("/metrics")
    def metrics():
        scrapes.inc()
        return PlainTextResponse(generate_latest(registry).decode())

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def test_config_scrapes_every_target_and_refuses_urls():
    config = yaml.safe_load(monitoring.prometheus_config({"rag": "127.0.0.1:8000", "vllm": ["127.0.0.1:9000"]},
                                                         scrape_interval="2s", rule_files=["/tmp/rules.yml"]))
    assert [job["job_name"] for job in config["scrape_configs"]] == ["rag", "vllm"]
    assert config["scrape_configs"][1]["static_configs"] == [{"targets": ["127.0.0.1:9000"]}]
    assert config["global"]["scrape_interval"] == "2s" and config["rule_files"] == ["/tmp/rules.yml"]
    with pytest.raises(monitoring.MonitoringError, match="host:port"):
        monitoring.prometheus_config({"rag": "http://127.0.0.1:8000/metrics"})
    with pytest.raises(monitoring.MonitoringError, match="at least one target"):
        monitoring.prometheus_config({})


def test_a_missing_tool_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not monitoring.prometheus_available()
    with pytest.raises(monitoring.MonitoringError, match="apt-get install prometheus"):
        monitoring.find_tool("promtool")


RULES = {"groups": [{"name": "demo", "rules": [{"alert": "TooManyErrors", "expr": "rate(errors_total[5m]) > 0.1",
                                                 "labels": {"severity": "page"}}]}]}
TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: errors_total
        values: '0+60x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: TooManyErrors
        exp_alerts:
          - exp_labels: {severity: page}
"""


@needs_prometheus
def test_promtool_checks_and_tests_rules():
    assert monitoring.promtool_check_rules(RULES)[0]
    ok, output = monitoring.promtool_check_rules({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "rate(x[5m]"}]}]})
    assert not ok and "parse error" in output
    ok, output = monitoring.promtool_test(RULES, TESTS)
    assert ok, output
    quiet = TESTS.replace("'0+60x30'", "'0+1x30'")  # 1/min is below the threshold: the expected alert never fires
    ok, output = monitoring.promtool_test(yaml.safe_dump(RULES), quiet)
    assert not ok and "TooManyErrors" in output
    with pytest.raises(monitoring.MonitoringError, match="rules.yml"):
        monitoring.promtool_test(RULES, "tests: []")


def test_service_thread_serves_and_stops():
    with monitoring.ServiceThread(metrics_app()) as service:
        assert service.running
        with urllib.request.urlopen(f"{service.base_url}/healthz", timeout=5) as response:
            assert response.status == 200
        port = service.port
    assert not service.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_service_thread_refuses_a_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(monitoring.MonitoringError, match="already in use"):
            monitoring.ServiceThread(metrics_app(), port=busy.getsockname()[1]).start()


@needs_prometheus
def test_prometheus_scrapes_and_answers_promql(tmp_path):
    with monitoring.ServiceThread(metrics_app()) as service, \
            monitoring.PrometheusServer({"demo": f"127.0.0.1:{service.port}"}, folder=tmp_path) as prometheus:
        assert (tmp_path / "prometheus.yml").is_file()
        assert prometheus.wait_for_targets(timeout=30)[0]["health"] == "up"
        waited = prometheus.wait_until("sum(demo_scrapes_total) >= 3", timeout=30)
        assert waited < 30
        value = prometheus.query_value("sum(demo_scrapes_total)")
        assert value >= 3
        assert prometheus.query_value("sum(no_such_metric)") is None
        now = time.time()
        (series,) = prometheus.query_range("demo_scrapes_total", now - 5, now, step=1)
        assert series["metric"]["job"] == "demo" and len(series["t"]) == len(series["v"]) >= 2
        with pytest.raises(monitoring.MonitoringError, match="parse error"):
            prometheus.query("rate(demo_scrapes_total")
        with pytest.raises(monitoring.MonitoringError, match="did not reach"):
            prometheus.wait_until("sum(demo_scrapes_total) < 0", timeout=1)
        process = prometheus.process
    assert process.poll() is not None, "Prometheus must be gone after its block"


@needs_prometheus
def test_prometheus_that_cannot_start_shows_its_log(tmp_path):
    (tmp_path / "data").write_text("a file where the database folder should be")
    broken = monitoring.PrometheusServer({"demo": "127.0.0.1:9"}, folder=tmp_path, startup_timeout=30)
    with pytest.raises(monitoring.MonitoringError, match="Last lines of its log"):
        broken.start()
    assert not broken.running and broken.process is None, "a failed start leaves no process behind"
    with pytest.raises(monitoring.MonitoringError, match="promtool rejects"):
        monitoring.PrometheusServer({"demo": "127.0.0.1:9"}, folder=tmp_path / "bad",
                                    rules={"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "up("}]}]}).start()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(monitoring.MonitoringError, match="already in use"):
            monitoring.PrometheusServer({"demo": "127.0.0.1:9"}, port=busy.getsockname()[1],
                                        folder=tmp_path / "busy").start()


def test_a_paused_server_hangs_and_resumes(tmp_path):
    port = free_port()
    server = ManagedServer("http", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                    "--directory", str(tmp_path)], port, startup_timeout=30)
    server.health_path = "/"
    with server:
        with monitoring.paused(server):
            with pytest.raises((urllib.error.URLError, TimeoutError, OSError)):
                urllib.request.urlopen(f"{server.base_url}/", timeout=1)
        with urllib.request.urlopen(f"{server.base_url}/", timeout=5) as response:
            assert response.status == 200
    with pytest.raises(monitoring.MonitoringError, match="not running"):
        monitoring.pause(server)
