"""Native backend vs a plain hand-written TRL + PEFT script (bench/baseline_trl.py), side by side.

Same tiny model, same prepared data, same settings; the two are run alternately in fresh processes, N
times each. Reported as ratios (native / baseline) with min/median/max: tokens/s (higher is better),
time from process start to the end of the first optimizer step (lower is better), and peak RSS.

    python bench/bench_native.py [--runs 3] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Start cmd; return (start unix time, peak RSS in KiB of the child, stdout)."""
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-2000:]}")
    return t0, usage.ru_maxrss, text


def _stats(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--recipe", default="lora-tiny")
    args = ap.parse_args(argv)

    from tuneforge.config.compose import load_run_config
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.models import resolve_model_path

    overrides = [f"recipe={args.recipe}", f"hparams.max_steps={args.steps}", "hparams.eval_steps=null",
                 "hparams.save_steps=null"]
    run = load_run_config(overrides)
    assert run.method.name == "lora", "the baseline script is LoRA"
    model_dir = resolve_model_path(run.model)  # build the tiny model once, outside the timings
    data = prepare_splits(run.dataset)
    settings = {"max_steps": args.steps, "micro_batch_size": run.hparams.micro_batch_size, "lr": run.optim.lr,
                "seq_len": run.hparams.seq_len, "r": run.method.r, "alpha": run.method.alpha}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    rows: dict[str, list[dict]] = {"native": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for kind in ("native", "baseline"):  # alternate, so drift hits both alike
                if kind == "native":
                    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *overrides,
                           f"output_root={tmp}/native", "hparams.logging_steps=1"]
                else:
                    cmd = [sys.executable, str(ROOT / "bench" / "baseline_trl.py"), model_dir, str(data.train),
                           f"{tmp}/baseline-{i}", json.dumps(settings)]
                t0, rss_kib, out = _run(cmd, env)
                if kind == "native":
                    summary = json.loads(sorted(Path(tmp, "native").glob("*/*/summary.json"))[-1].read_text())
                    tokens, runtime, first = summary["tokens"], summary["train_runtime_s"], summary["first_step_unix"]
                else:
                    rec = json.loads(out.strip().splitlines()[-1])
                    tokens, runtime, first = rec["tokens"], rec["train_runtime"], rec["first_step_unix"]
                rows[kind].append({"tokens_per_s": tokens / runtime, "ttfs_s": first - t0,
                                   "rss_mib": rss_kib / 1024})
                print(f"run {i + 1}/{args.runs} {kind:8s} tokens/s {tokens / runtime:8.0f}  "
                      f"first step {first - t0:5.2f} s  peak RSS {rss_kib / 1024:6.0f} MiB", file=sys.stderr)

    n, b = rows["native"], rows["baseline"]
    tps = [x["tokens_per_s"] / y["tokens_per_s"] for x, y in zip(n, b)]
    ttfs = [x["ttfs_s"] / y["ttfs_s"] for x, y in zip(n, b)]
    rss = [x["rss_mib"] / y["rss_mib"] for x, y in zip(n, b)]
    table = "\n".join([
        f"### native backend vs plain TRL+PEFT script ({args.recipe}, {args.steps} steps, {args.runs} alternating "
        "runs each, fresh processes)",
        "",
        "| metric | native (median) | baseline (median) | ratio min / median / max | target |",
        "|---|---|---|---|---|",
        f"| tokens/s | {statistics.median(x['tokens_per_s'] for x in n):.0f} | "
        f"{statistics.median(x['tokens_per_s'] for x in b):.0f} | {_stats(tps)} | >= 1.0x |",
        f"| time to first step (s, from process start) | {statistics.median(x['ttfs_s'] for x in n):.2f} | "
        f"{statistics.median(x['ttfs_s'] for x in b):.2f} | {_stats(ttfs)} | <= 1.1x |",
        f"| peak RSS (MiB) | {statistics.median(x['rss_mib'] for x in n):.0f} | "
        f"{statistics.median(x['rss_mib'] for x in b):.0f} | {_stats(rss)} | - |",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "native.md").write_text(table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
