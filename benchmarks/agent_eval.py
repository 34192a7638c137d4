"""Benchmark of lab 6 (the on-call agent): run the lab and print its held-out numbers.

    .venv/bin/python benchmarks/agent_eval.py            # quick mode (the CI form)
    .venv/bin/python benchmarks/agent_eval.py --student  # student mode: more incidents and trials

The lab's reference notebook (autograder/source/phase2/06_agent_with_eval.ipynb) runs top to
bottom in a fresh kernel, as CI and a learner run it, against a real vLLM server. It writes
06_agent_with_eval.json, which this script reads and prints beside the run's wall time and
peak memory. Held-out incidents and BFCL tasks appear here only as aggregate numbers.
Nothing is written into the repository.

It also audits the network: every Python process the lab starts (its kernel, the vLLM
servers, Pydantic AI inside the kernel) records each address it connects to, and the
script prints them; anything but the loopback address or a local socket is a leak.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import run_lab  # noqa: E402

LOOPBACK = {"'127.0.0.1'", "'::1'"}

# Imported by every Python process that inherits PYTHONPATH: log each address it connects to.
_AUDIT = """
import os, socket
_log, _connect = os.environ["LABKIT_CONNECTION_LOG"], socket.socket.connect
def _logged_connect(self, address):
    where = address if isinstance(address, (str, bytes)) else address[0]
    with open(_log, "a") as log:
        log.write(f"{self.family.name} {where!r} {self.type.name}\\n")
    return _connect(self, address)
socket.socket.connect = _logged_connect
"""


def _audited_env(folder: Path) -> dict:
    (folder / "sitecustomize.py").write_text(_AUDIT)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "LABKIT_CONNECTION_LOG": str(folder / "connections.log")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", action="store_true", help="student mode instead of quick mode")
    parser.add_argument("--timeout", type=int, default=3000, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    mode = "student" if args.student else "quick"
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        audit = Path(tmp) / "audit"
        audit.mkdir()
        print(f"running the lab in {mode} mode ...", flush=True)
        lab, found = run_lab("06_agent_with_eval", Path(tmp), quick=not args.student, timeout=args.timeout,
                             results_file="06_agent_with_eval.json", extra_env=_audited_env(audit))
        log = audit / "connections.log"
        connections = log.read_text().splitlines() if log.is_file() else []
    print(f"\n== {mode} mode, {found['hardware']}, precision {found['precision']}")
    print(f"   model: {found['model']}")
    print(f"   whole lab: {lab.wall_s:.0f} s wall, peak memory {lab.peak_mb:.0f} MiB")
    print(f"   {found['heldout_n']} held-out incidents; 95% Wilson intervals")
    for name, s in found["results"].items():
        if name == "pass_k" or name.startswith("BFCL"):
            continue
        print(f"   {name:<38} success {s['success']:5.1%} [{s['success_ci'][0]:5.1%}, {s['success_ci'][1]:5.1%}]  "
              f"harmful {s['harmful']:5.1%} [{s['harmful_ci'][0]:5.1%}, {s['harmful_ci'][1]:5.1%}]  "
              f"valid replies {s['valid_replies']:5.1%}  {s['mean_steps']:.1f} steps  "
              f"{s['mean_latency_s']:.1f} s/task  {s['mean_tokens']:.0f} tokens/task")
    print(f"   pass^k (constrained, T=0.7): {found['results']['pass_k']}")
    bench = found["public_benchmark"]
    print(f"   {bench['name']} ({bench['licence']}), {bench['n']} tasks, seed {bench['seed']}:")
    for name in [n for n in found["results"] if n.startswith("BFCL")]:
        s = found["results"][name]
        print(f"   {name:<38} accuracy {s['accuracy']:5.1%} [{s['accuracy_ci'][0]:5.1%}, {s['accuracy_ci'][1]:5.1%}]  "
              f"{s['seconds'] / s['tasks']:.2f} s/task  wrong: {s['why_wrong']}")
    print(f"   framework: {found['framework']}")
    remote = sorted({c for c in connections if not c.startswith("AF_UNIX") and c.split(" ")[1] not in LOOPBACK})
    print(f"   network audit: {len(connections)} connections, "
          + (f"NOT LOCAL: {remote}" if remote else "every one to 127.0.0.1 or a local socket"))
    gate = found["regression_gate"]
    print(f"   regression gate, constrained vs free-form: {gate['wins']} wins, {gate['losses']} losses, "
          f"p={gate['p_value']:.3f}, {'pass' if gate['passed'] else 'FAIL'}")
    return 1 if remote else 0


if __name__ == "__main__":
    sys.exit(main())
