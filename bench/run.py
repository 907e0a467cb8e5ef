"""`make bench`: every benchmark in bench/, each against its baseline, results in bench/results/*.md.

    python bench/run.py                 # all
    python bench/run.py native plan     # some
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "native": "bench_native.py",  # native backend vs a plain TRL+PEFT script
    "plan": "bench_plan.py",  # `plan` wall time per recipe
    "data": "bench_data.py",  # lint + convert + split throughput and memory
    "real": "bench_real.py",  # SmolLM2: native vs plain TRL defaults vs axolotl (useful tokens/s, setup, RSS)
    "bf16": "bench_bf16.py",  # bf16 autocast vs fp32 on this CPU: speed and loss agreement
}


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def main(argv: list[str]) -> int:
    names = [a for a in argv if "=" not in a] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    for name in names:
        path = HERE / BENCHES[name]
        if not path.exists():
            print(f"== {name}: {path.name} not present, skipped", file=sys.stderr)
            continue
        print(f"== {name}", flush=True)
        _load(path).main([])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
