"""`tuneforge plan` wall time per recipe (target < 1.5 s; plan must not import torch).

Each measurement is a fresh interpreter running the CLI exactly as `make plan` does (`tuneforge plan
recipe=...`), so start-up, Hydra composition, translation, estimate and file writing are all counted.
Results: bench/results/plan.md.  Run: .venv/bin/python bench/bench_plan.py [repeats]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.5
# every recipe as it is, plus the heaviest plans: axolotl + DeepSpeed + multi-node accelerate
EXTRA = {
    "qlora-llama (axolotl, zero2, 2x8 GPUs)": ["recipe=qlora-llama", "backend=axolotl", "launcher=accelerate",
                                               "launcher.gpus_per_node=8", "launcher.num_nodes=2",
                                               "launcher.main_process_ip=10.0.0.1", "distributed=zero2",
                                               "run_dir=/shared/runs/q"],
    "full-llama (native, zero3-offload, 8 GPUs)": ["recipe=full-llama", "launcher=accelerate",
                                                   "launcher.gpus_per_node=8", "distributed=zero3-offload"],
}


def measure(overrides: list[str], out: Path) -> tuple[float, bool]:
    """Wall seconds of one fresh `tuneforge plan` process (what the console script runs), and whether it
    imported torch."""
    code = ("import sys; from tuneforge.cli import main; "
            f"rc = main(['plan', *{overrides!r}, '--out', {str(out)!r}]); "
            "sys.stderr.write('TORCH\\n' if 'torch' in sys.modules else ''); sys.exit(rc)")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"plan {' '.join(overrides)} failed:\n{proc.stderr}")
    return wall, "TORCH" in proc.stderr


def main(argv: list[str] | None = None) -> int:
    repeats = int(argv[0]) if argv else 3
    recipes = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    cases = {r: [f"recipe={r}"] for r in recipes} | EXTRA
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in cases.items():
            times, torch_loaded = [], False
            for i in range(repeats):
                wall, torch_seen = measure(overrides, Path(tmp) / f"{len(rows)}-{i}")
                times.append(wall)
                torch_loaded |= torch_seen
            rows.append((name, statistics.median(times), max(times), torch_loaded))
            print(f"{name:<45} median {rows[-1][1]:.3f} s  max {rows[-1][2]:.3f} s  torch imported: {torch_loaded}",
                  flush=True)
    worst = max(r[2] for r in rows)
    ok = worst < TARGET_S and not any(r[3] for r in rows)
    lines = ["# `tuneforge plan` wall time", "",
             (f"Fresh interpreter per call (`tuneforge plan <overrides> --out DIR`), {repeats} runs each, on this "
              f"machine (2 shared cores). Target: < {TARGET_S} s, no torch import. Reproduce: "
              "`.venv/bin/python bench/bench_plan.py`."), "",
             "| plan | median s | max s | torch imported |", "|---|---:|---:|---|"]
    lines += [f"| {n} | {med:.3f} | {mx:.3f} | {'yes' if tl else 'no'} |" for n, med, mx, tl in rows]
    lines += ["", f"Worst case {worst:.3f} s: {'within' if ok else 'OVER'} the target."]
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "plan.md").write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
