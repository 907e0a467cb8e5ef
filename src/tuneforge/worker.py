"""Per-process entry: ``python -m tuneforge.worker <run_dir>`` trains exactly the config the run directory
holds. Multi-process launchers (accelerate, srun) start one of these per rank."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tuneforge.backends.registry import get_backend
from tuneforge.rundir import atomic_write_json, read_config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tuneforge.worker <run_dir>", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    run = read_config(run_dir)
    result = get_backend(run.backend.name).train(run, run_dir)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(run_dir / "worker_result.json", result)
    print(json.dumps({"rank": os.environ.get("RANK", "0"), "steps": result.get("steps")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
