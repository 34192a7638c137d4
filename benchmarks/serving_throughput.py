"""Continuous batching, measured: output throughput of vLLM against a server that does not
batch (`transformers serve` without continuous batching), at concurrency 1, 4, 16 and 32.

Both servers serve the course's SmolLM2-135M-Instruct on 127.0.0.1 and are loaded by the
same client, vLLM's own benchmark client (`vllm bench serve`), with random 64-token prompts
and up to 64 output tokens per request, twice as many requests as the concurrency.
On a shared machine absolute numbers move from run to run; the ratio is the result.

    .venv/bin/python benchmarks/serving_throughput.py [--levels 1 4 16 32]
"""
from __future__ import annotations

import argparse

from labkit import describe_hardware, serving


def sweep(server, levels, output_len):
    rows = {}
    for concurrency in levels:
        result = serving.vllm_bench(server, num_prompts=max(8, 2 * concurrency), max_concurrency=concurrency,
                                    input_len=64, output_len=output_len, timeout=1800)
        rows[concurrency] = result
        print(f"  concurrency {concurrency:>3}: {result['output_throughput']:7.1f} output tok/s, "
              f"median TTFT {result['median_ttft_ms']:7.0f} ms, p95 end to end {result['p95_e2el_ms'] / 1000:6.2f} s",
              flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--output-len", type=int, default=64)
    args = parser.parse_args()
    print(f"hardware: {describe_hardware()}")
    with serving.vllm_server(max_num_seqs=max(args.levels)) as server:
        print(f"vLLM (ready after {server.ready_after_s:.0f} s), --max-num-seqs {max(args.levels)}:")
        fast = sweep(server, args.levels, args.output_len)
    with serving.baseline_server() as server:
        print(f"transformers serve without batching (ready after {server.ready_after_s:.0f} s):")
        slow = sweep(server, args.levels, args.output_len)
    print("\nthroughput ratio, vLLM / no batching:")
    for concurrency in args.levels:
        ratio = fast[concurrency]["output_throughput"] / slow[concurrency]["output_throughput"]
        print(f"  concurrency {concurrency:>3}: {ratio:5.1f}x")


if __name__ == "__main__":
    main()
