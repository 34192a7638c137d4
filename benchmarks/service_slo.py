"""The shipping lab's headline numbers on this machine: run the reference lab 7 and print them.

    python benchmarks/service_slo.py            # quick mode (a 20 s load, a 15 s outage by pausing vLLM)
    python benchmarks/service_slo.py --student  # student mode (a 2 min load, vLLM stopped and restarted)

It executes the instructor's source notebook (the reference answers) top to bottom in a
fresh kernel, so the service, its metrics and its alert are the lab's own, then prints from
the results file: p50/p95/p99 latency, throughput and error rate under the load test, read
back from Prometheus; the requests/s of the service with and without its metrics middleware,
measured in alternating rounds within one run; and the drill's times to detect and recover.
The CPU and the load average at the end are printed with them: on a shared machine, read
the ratio and the drill times, not the absolute rates.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import run_lab  # noqa: E402


def run(quick: bool, out: Path, timeout: int) -> dict:
    lab, numbers = run_lab("07_ship_and_monitor", out, quick=quick, timeout=timeout, results_file="07_ship_and_monitor.json")
    return {"lab_wall_s": lab.wall_s, "lab_peak_mib": lab.peak_mb,
            "load_average_after_1_5_15": [round(x, 1) for x in os.getloadavg()], **numbers}


def show(r: dict) -> None:
    slo, drill, cost = r["slo_report"], r["drill"], r["metrics_overhead"]
    print(f"hardware: {r['hardware']} ({r['precision']}); mode: {r['mode']}")
    print(f"load average during the lab's last cell: {r['load_average_1_5_15']}, after it: {r['load_average_after_1_5_15']}")
    print(f"load: {r['load_generator']}")
    print(f"latency (Prometheus, histogram_quantile): p50 {slo['p50_s']:.2f} s  p95 {slo['p95_s']:.2f} s  "
          f"p99 {slo['p99_s']:.2f} s")
    avail = slo["availability"]
    low, high = avail["error_rate_ci"]
    print(f"throughput {slo['throughput_answers_per_s']:.2f} answers/s; error rate {avail['error_rate']:.2%} "
          f"(Wilson 95% {low:.2%}-{high:.2%}) of {slo['requests']:.0f} requests; "
          f"availability budget left {avail['budget_left']:.0%}; {slo['latency']['within']:.1%} within the latency SLO")
    tokens = slo["completion_tokens_per_s"]
    print(f"completion tokens/s: service (server usage) {tokens['service (usage)']:.1f}, vLLM's own counter {tokens['vLLM']:.1f}")
    print(f"metrics middleware: {cost['without metrics']:.0f} requests/s without, {cost['with metrics']:.0f} with "
          f"(medians of {cost['rounds']} alternating rounds of {cost['requests_per_round']}); "
          f"ratio {cost['ratio_with_to_without']:.2f}")
    def seconds(value):
        return "not within the lab's wait" if value is None else f"{value:.1f} s"

    print(f"drill ({drill['mode']}, {drill['outage_s']} s): detect /readyz {seconds(drill['detect_readyz_s'])}, "
          f"alert {seconds(drill['detect_alert_s'])}; recover /readyz {seconds(drill['recover_readyz_s'])}, "
          f"alert {seconds(drill['recover_alert_s'])}; 503s answered in a median {drill['median_503_latency_s'] or 0:.3f} s")
    print(f"lab wall time {r['lab_wall_s']:.0f} s (as measured by the runner), peak memory {r['lab_peak_mib']:.0f} MiB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", action="store_true", help="student mode: longer load, a real vLLM restart")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed for any one cell")
    parser.add_argument("--out", type=Path, help="folder for the executed notebook and results (default: a temporary one)")
    args = parser.parse_args(argv)
    out = (args.out or Path(tempfile.mkdtemp(prefix="service-slo-"))).resolve()  # the kernel runs in the lab's folder
    result = run(quick=not args.student, out=out, timeout=args.timeout)
    show(result)
    print(f"executed notebook and results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
