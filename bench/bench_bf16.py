"""bf16 autocast on the CPU vs fp32: one LoRA training step (forward + backward + AdamW) of the real model
(SmolLM2-135M-Instruct, the recipe's LoRA), alternating, in one process. Reports the step-time ratio and how
far the bf16 loss is from the fp32 loss on the same batch; `hparams.mixed_precision=auto` takes bf16 on a
CPU only where this says it is faster and still correct.

    python bench/bench_bf16.py [--tokens 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    from tuneforge.config.compose import load_run_config
    from tuneforge.models import load_model
    from tuneforge.strategies.registry import get_strategy

    run = load_run_config(["recipe=lora-smollm2"])
    model = get_strategy(run).build(run, load_model(run))
    model.config.use_cache = False
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)  # lr 0: weights stay
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (1, args.tokens), generator=g)

    def step(bf16: bool) -> tuple[float, float]:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t, loss.detach().item()

    step(False)  # warm-up
    step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    losses: dict[bool, float] = {}
    for _ in range(args.rounds):
        for bf16 in (False, True):
            dt, loss = step(bf16)
            times[bf16].append(dt)
            losses[bf16] = loss
    ratio = [b / f for f, b in zip(times[False], times[True])]
    flags = cpu_flags()
    have = ", ".join(sorted(f for f in flags if "bf16" in f or f.startswith("amx") or f == "avx512f")) or "none"
    table = "\n".join([
        f"### bf16 autocast vs fp32 on this CPU (one LoRA step of SmolLM2-135M, {args.tokens} tokens, "
        f"{args.rounds} alternating rounds)", "",
        f"CPU flags for bf16: {have}; torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
        "| metric | fp32 (median) | bf16 autocast (median) | bf16 / fp32 (min / median / max) |",
        "|---|---:|---:|---|",
        f"| step time (s) | {statistics.median(times[False]):.2f} | {statistics.median(times[True]):.2f} | "
        f"{min(ratio):.2f} / {statistics.median(ratio):.2f} / {max(ratio):.2f} |",
        f"| loss on the same batch | {losses[False]:.4f} | {losses[True]:.4f} | "
        f"diff {abs(losses[True] - losses[False]):.4f} |",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bf16.md").write_text(table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
