"""Benchmark of lab 5 (LoRA fine-tuning): run the lab and print what it measured.

    .venv/bin/python benchmarks/lora_finetune.py            # quick mode, then student mode
    .venv/bin/python benchmarks/lora_finetune.py --quick    # quick mode only (the CI form)
    .venv/bin/python benchmarks/lora_finetune.py --student  # student mode only

The lab's reference notebook (autograder/source/phase2/05_lora_finetune.ipynb) is executed
top to bottom in a fresh kernel, exactly as CI and a learner run it; the notebook writes its
numbers to 05_lora_finetune.json, which this script reads and prints beside the run's wall
time and peak memory (kernel included). Nothing is written into the repository.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import run_lab  # noqa: E402


def run(mode: str, out: Path, timeout: int) -> dict:
    lab, numbers = run_lab("05_lora_finetune", out / mode, quick=(mode == "quick"), timeout=timeout,
                           results_file="05_lora_finetune.json")
    # The machine may be shared: the load average at the end says how far to trust the times.
    return {"mode": mode, "lab_wall_s": lab.wall_s, "lab_peak_mib": lab.peak_mb,
            "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()], **numbers}


def show(r: dict) -> None:
    def ci(t):
        return f"{t[0]:+6.1%} [{t[1]:+6.1%}, {t[2]:+6.1%}]"

    print(f"\n== {r['mode']} mode, {r['hardware']}, {r['precision']}")
    print(f"  model                 {r['model']['what']}")
    print(f"  whole lab:            {r['lab_wall_s']:7.1f} s wall, peak memory {r['lab_peak_mib']:6.0f} MiB, "
          f"load average at the end {r['load_average_1_5_15']}")
    dev = ", ".join(f"{name} {exact:.0%}" for name, exact in r["dev_exact"].items())
    print(f"  dev exact match       {dev} (n={r['dev_n']}); chosen: {r['chosen_on_dev']}")
    for split, numbers in r["heldout"].items():
        print(f"  {split:<12} n={numbers['n']:<4} base {ci(numbers['base'])}  few-shot {ci(numbers['few_shot'])}  "
              f"tuned {ci(numbers['tuned'])}  (Wilson 95%)")
        print(f"  {'':<19} gain over base {ci(numbers['gain_over_base'])}, over few-shot "
              f"{ci(numbers['gain_over_few_shot'])} (paired bootstrap 95%)")
    print(f"  training (chosen run) {r['train_steps']} steps, {r['train_wall_s']:.1f} s, "
          f"{r['train_tokens_per_s']:.0f} tokens/s, peak memory {r['peak_memory_mib']} MiB")
    print(f"  adapter on disk       {r['adapter_mib']:.2f} MiB")
    served = r.get("served_by_vllm")
    if served:
        print(f"  served by vLLM        first {served['requests']} test requests, 8 in flight: adapter exact "
              f"{served['toolcalls']['exact']:.0%} (in-process {served['in_process_exact']:.0%}), "
              f"{served['toolcalls']['tokens_per_s']:.0f} tok/s; base model from the same server "
              f"{served['chat']['tokens_per_s']:.0f} tok/s; identical replies {served['identical_replies']:.0%}")
    else:
        print("  served by vLLM        skipped: the lab could not start vLLM (see its Step 9 output)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--quick", action="store_true", help="quick mode only")
    only.add_argument("--student", action="store_true", help="student mode only")
    parser.add_argument("--timeout", type=int, default=3000, help="seconds allowed per cell")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    modes = ["quick"] if args.quick else ["student"] if args.student else ["quick", "student"]
    found = []
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        for mode in modes:
            print(f"running the lab in {mode} mode ...", flush=True)
            found.append(run(mode, Path(tmp), args.timeout))
            show(found[-1])
    print("\nTimes on a shared machine are upper bounds; compare runs made on the same machine.")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
