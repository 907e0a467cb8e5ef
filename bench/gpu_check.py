"""`make gpu-check`: the GPU proof in one process tree (issue 27), on a machine without the real weights.

Each step trains through the real front door (`tuneforge train`, a fresh process) with the architecture's
random weights where the checkpoint is not on the machine (`model.init=random`: the shape of plan's table, the
tiny tokenizer), reads the run's summary.json (tokens, runtime, peak GPU memory from torch) and compares the
measured peak with `plan`'s estimate. MFU = tokens/s x FLOPs per token (plan's count: 6N full, 4N frozen base,
+ attention) / a bf16 matmul peak measured on this GPU at the start.

    python bench/gpu_check.py                 # every step (about 8 minutes on one H100/H200)
    python bench/gpu_check.py --dry-run       # compose and plan every step (any machine; what the CPU test runs)
    python bench/gpu_check.py --only lora-8b  # some steps

Results: bench/results/gpu_check.md and gpu_check.json. Without CUDA (and without --dry-run) it says so in one
line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent

# (id, what, overrides, time limit in seconds)
STEPS: list[tuple[str, str, list[str], int]] = [
    ("default-bf16", "the default recipe (Gemma 3 270M LoRA) in bf16, 20 steps",
     ["recipe=lora-gemma3", "hparams.max_steps=20", "hparams.mixed_precision=bf16"], 120),
    ("qlora-8b", "recipe=qlora-llama, random Llama 3.1 8B, 20 steps",
     ["recipe=qlora-llama", "model.init=random", "hparams.max_steps=20"], 150),
    ("lora-8b", "recipe=lora-llama (bf16), random Llama 3.1 8B, 20 steps",
     ["recipe=lora-llama", "model.init=random", "hparams.max_steps=20"], 150),
    ("full-1b-zero2", "full fine-tuning, random Llama 3.2 1B, ZeRO-2 through accelerate, 10 steps",
     ["recipe=full-llama", "model=llama-3.2-1b", "model.init=random", "distributed=zero2", "launcher=accelerate",
      "hparams.max_steps=10"], 120),
    ("full-1b-zero3", "the same with ZeRO-3",
     ["recipe=full-llama", "model=llama-3.2-1b", "model.init=random", "distributed=zero3", "launcher=accelerate",
      "hparams.max_steps=10"], 120),
    ("axolotl-default", "the default recipe through backend=axolotl, 10 steps",
     ["recipe=lora-gemma3", "backend=axolotl", "hparams.max_steps=10"], 150),
]
COMMON = ["eval.after_training=false", "hparams.save_steps=null", "hparams.max_eval_samples=4", "gpu=h100-80g"]


def environment() -> dict:
    import torch

    env: dict = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count()}
    if not torch.cuda.is_available():
        return env
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, memory_gib=round(p.total_memory / 1024**3, 1),
               bf16=torch.cuda.is_bf16_supported(), sdpa_flash=torch.backends.cuda.flash_sdp_enabled())
    try:
        import flash_attn  # noqa: F401

        env["flash_attn"] = True
    except ImportError:
        env["flash_attn"] = False
    try:
        import bitsandbytes.functional as bnbf

        x = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
        q, state = bnbf.quantize_4bit(x, quant_type="nf4")
        err = (bnbf.dequantize_4bit(q, state) - x).abs().mean().item()
        env["bitsandbytes_cuda_nf4"] = err < 0.2
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        env["bitsandbytes_cuda_nf4"] = f"fails: {str(exc).splitlines()[0][:120]}"
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t0, n = time.perf_counter(), 20
    for _ in range(n):
        a @ a
    torch.cuda.synchronize()
    env["matmul_bf16_tflops"] = round(2 * 8192**3 * n / (time.perf_counter() - t0) / 1e12, 1)
    return env


def planned(overrides: list[str]) -> dict:
    """plan's estimate for a step: per-GPU memory and FLOPs per token (no torch, no weights)."""
    from tuneforge.config.compose import load_run_config
    from tuneforge.plan import make_plan
    from tuneforge.verdict import flops_per_token

    run = load_run_config(overrides)
    plan = make_plan(run)
    return {"plan_gib": round(plan.memory.total_gib, 2), "flops_per_token": flops_per_token(run),
            "plan_notes": plan.notes[:3]}


def train(step: str, overrides: list[str], limit: int, out: Path) -> dict:
    t0 = time.perf_counter()
    cmd = [str(BIN / "tuneforge"), "train", *overrides, f"output_root={out / step}", "--yes"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"over its {limit} s limit", "wall_s": round(time.perf_counter() - t0, 1)}
    summaries = sorted((out / step).glob("*/*/summary.json"))
    if proc.returncode or not summaries:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"ok": False, "error": " | ".join(tail)[:400], "wall_s": round(time.perf_counter() - t0, 1)}
    s = json.loads(summaries[-1].read_text())
    runtime = s.get("train_runtime_s") or s.get("wall_s")
    return {"ok": True, "wall_s": round(time.perf_counter() - t0, 1), "tokens": s.get("tokens"),
            "tokens_per_s": round(s["tokens"] / runtime, 1) if s.get("tokens") and runtime else None,
            "peak_gib": s.get("peak_gpu_memory_gib"), "last_loss": s.get("last_loss")}


def table(env: dict, rows: list[dict]) -> str:
    head = ", ".join(f"{k} {v}" for k, v in env.items())
    lines = [f"# make gpu-check\n\n{head}\n",
             "| step | ok | tokens/s | MFU | peak GiB | plan GiB | plan error | last loss | wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        err = (f"{100 * (r['plan_gib'] - r['peak_gib']) / r['peak_gib']:+.0f}%"
               if r.get("peak_gib") and r.get("plan_gib") else "–")
        mfu = f"{100 * r['mfu']:.0f}%" if r.get("mfu") is not None else "–"
        ok = "yes" if r.get("ok") else "NO: " + r.get("error", "")
        lines.append(f"| {r['step']} | {ok} | {r.get('tokens_per_s') or '–'} | {mfu} | {r.get('peak_gib') or '–'} | "
                     f"{r.get('plan_gib', '–')} | {err} | {r.get('last_loss') or '–'} | {r.get('wall_s', '–')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="compose and plan every step; train nothing")
    ap.add_argument("--only", nargs="*", default=None, help="step ids: " + ", ".join(s[0] for s in STEPS))
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu-check")
    args = ap.parse_args(argv)
    steps = [s for s in STEPS if args.only is None or s[0] in args.only]
    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print("gpu-check: no CUDA device here; it needs a GPU (python bench/gpu_check.py --dry-run plans the steps)")
        return 0
    env = environment()
    rows = []
    for step, what, overrides, limit in steps:
        row: dict = {"step": step, "what": what, **planned([*overrides, *COMMON])}
        if not args.dry_run:
            row.update(train(step, [*overrides, *COMMON], limit, args.out))
            if row.get("tokens_per_s") and env.get("matmul_bf16_tflops"):
                row["mfu"] = row["tokens_per_s"] * row["flops_per_token"] / (env["matmul_bf16_tflops"] * 1e12)
        rows.append(row)
        print(f"gpu-check {step}: {json.dumps({k: v for k, v in row.items() if k != 'plan_notes'})}", flush=True)
    if args.dry_run:
        return 0
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "gpu_check.json").write_text(json.dumps({"environment": env, "steps": rows}, indent=2) + "\n")
    (results / "gpu_check.md").write_text(table(env, rows))
    print(table(env, rows))
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main(sys.argv[1:]))
