"""Benchmark of lab 6 (the on-call agent): run the lab and print its held-out numbers.

    .venv/bin/python benchmarks/agent_eval.py            # quick mode (the CI form)
    .venv/bin/python benchmarks/agent_eval.py --student  # student mode: more incidents and trials

The lab's reference notebook (autograder/source/phase2/06_agent_with_eval.ipynb) runs top to
bottom in a fresh kernel, as CI and a learner run it, against a real vLLM server. It writes
06_agent_with_eval.json, which this script reads and prints beside the run's wall time and
peak memory. Held-out incidents appear here only as aggregate numbers. Nothing is written
into the repository.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "autograder" / "source" / "phase2" / "06_agent_with_eval.ipynb"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", action="store_true", help="student mode instead of quick mode")
    parser.add_argument("--timeout", type=int, default=3000, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    from labkit.labrun import run_notebook

    mode = "student" if args.student else "quick"
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        results = Path(tmp) / "results"
        print(f"running the lab in {mode} mode ...", flush=True)
        lab = run_notebook(LAB, Path(tmp) / LAB.name, timeout=args.timeout, quick=not args.student,
                           extra_env={"LABKIT_RESULTS": str(results)})
        found = json.loads((results / "06_agent_with_eval.json").read_text())
    print(f"\n== {mode} mode, {found['hardware']}, precision {found['precision']}")
    print(f"   model: {found['model']}")
    print(f"   whole lab: {lab.wall_s:.0f} s wall, peak memory {lab.peak_mb:.0f} MiB")
    print(f"   {found['heldout_n']} held-out incidents; 95% Wilson intervals")
    for name, s in found["results"].items():
        if name == "pass_k":
            continue
        print(f"   {name:<38} success {s['success']:5.1%} [{s['success_ci'][0]:5.1%}, {s['success_ci'][1]:5.1%}]  "
              f"harmful {s['harmful']:5.1%} [{s['harmful_ci'][0]:5.1%}, {s['harmful_ci'][1]:5.1%}]  "
              f"valid replies {s['valid_replies']:5.1%}  {s['mean_steps']:.1f} steps  "
              f"{s['mean_latency_s']:.1f} s/task  {s['mean_tokens']:.0f} tokens/task")
    print(f"   pass^k (constrained, T=0.7): {found['results']['pass_k']}")
    gate = found["regression_gate"]
    print(f"   regression gate, constrained vs free-form: {gate['wins']} wins, {gate['losses']} losses, "
          f"p={gate['p_value']:.3f}, {'pass' if gate['passed'] else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
