"""Continuous batching, measured: output throughput of vLLM against a server that does not
batch (`transformers serve` without continuous batching), at concurrency 1, 4, 16 and 32.

Both servers serve the course's SmolLM2-135M-Instruct on 127.0.0.1 and get the same load:
a closed loop of N client threads, each sending plain (non-streaming) completions of up to
64 tokens, max(4, N) requests in all; throughput is the completion tokens the servers
report divided by the wall time. (vLLM's own `vllm bench serve` sends fields that
`transformers serve` rejects, so it cannot drive the baseline; lab 4 cross-checks it
against vLLM.) On a shared machine absolute numbers move from run to run; the ratio is
the result.

    .venv/bin/python benchmarks/serving_throughput.py [--levels 1 4 16 32]
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

from labkit import describe_hardware, serving


def throughput(server, concurrency, max_tokens):
    client = OpenAI(base_url=server.openai_url, api_key="not-needed-locally", timeout=600)
    prompts = [f"Write a short note for the on-call engineer about incident number {i}."
               for i in range(max(4, concurrency))]

    def one(prompt):
        reply = client.completions.create(model=server.served_model, prompt=prompt, max_tokens=max_tokens,
                                          temperature=0, extra_body=server.extra_body or None)
        return reply.usage.completion_tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        tokens = sum(pool.map(one, prompts))
    wall = time.perf_counter() - start
    print(f"  concurrency {concurrency:>3}: {tokens / wall:7.1f} output tok/s ({tokens} tokens in {wall:.1f} s)", flush=True)
    return tokens / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    print(f"hardware: {describe_hardware()}")
    with serving.vllm_server(max_num_seqs=max(args.levels)) as server:
        print(f"vLLM (ready after {server.ready_after_s:.0f} s), --max-num-seqs {max(args.levels)}:")
        fast = {n: throughput(server, n, args.max_tokens) for n in args.levels}
    with serving.baseline_server() as server:
        print(f"transformers serve without batching (ready after {server.ready_after_s:.0f} s):")
        slow = {n: throughput(server, n, args.max_tokens) for n in args.levels}
    print("\nthroughput ratio, vLLM / no batching:")
    for n in args.levels:
        print(f"  concurrency {n:>3}: {fast[n] / slow[n]:5.1f}x")


if __name__ == "__main__":
    main()
