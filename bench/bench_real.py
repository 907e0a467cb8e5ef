"""The real model (SmolLM2-135M-Instruct), three ways, side by side on the same examples:

- ``native``: ``tuneforge train recipe=lora-smollm2`` (its settings: LoRA on the top 15 layers, padding-free
  packing into 512-token rows, one example per step, loss on the assistant turns);
- ``trl``: the plain TRL ``SFTTrainer`` + PEFT script with TRL's documented defaults except precision
  (``bench/baseline_trl_defaults.py``);
- ``axolotl``: the same recipe through ``backend=axolotl`` (axolotl's trainer, launched with accelerate).

Each trains one epoch over the same first N examples of the Đà Lạt train split, in fresh processes, in
alternating rounds. **Useful tokens** are the tokens the task needs trained: the assistant tokens (non-pad,
with a loss) of those N examples, the same count for all three (counted once with tuneforge's role mask);
useful tokens/s = that count / the Trainer's train_runtime. Also reported: non-padding tokens/s as each
Trainer counts them, time from process start to the first training step (setup: model, data, Trainer), and
peak RSS of the process tree. Ratios are native / other, min / median / max over the rounds.

    python bench/bench_real.py [--rounds 2] [--examples 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_native import _run, _stats  # noqa: E402  (same process runner: wait4 peak RSS)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SYSTEMS = ("native", "trl", "axolotl")


def _bench_overrides(train_file: Path) -> list[str]:
    return ["recipe=lora-smollm2", "dataset=sample-chat", "dataset.name=bench-dalat", f"dataset.path={train_file}",
            "dataset.split.train=1.0", "dataset.split.val=0.0", "dataset.split.test=0.0",
            "hparams.max_steps=-1", "hparams.epochs=1", "hparams.max_eval_samples=null"]


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--examples", type=int, default=12)  # the data lint needs >= 10
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    args = ap.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]

    from tuneforge.config.compose import load_run_config
    from tuneforge.data.masking import tokenize_with_role_mask
    from tuneforge.data.prepare import prepare_splits
    from tuneforge.models import load_tokenizer, resolve_model_path

    run = load_run_config(["recipe=lora-smollm2"])
    model_dir = resolve_model_path(run.model)  # the GGUF converted once, outside the timings
    rows = Path(prepare_splits(run.dataset).train).read_text(encoding="utf-8").splitlines()[:args.examples]
    tok = load_tokenizer(run)
    masks = [tokenize_with_role_mask(tok, json.loads(r)["messages"])["assistant_masks"] for r in rows]
    useful, total = sum(sum(m) for m in masks), sum(len(m) for m in masks)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "AXOLOTL_DO_NOT_TRACK": "1"}
    got: dict[str, list[dict]] = {s: [] for s in systems}
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp, "bench-dalat.jsonl")
        train_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
        over = _bench_overrides(train_file)
        for i in range(args.rounds):
            for kind in systems:  # alternate, so drift hits all alike
                out_root = Path(tmp, f"{kind}-{i}")
                if kind == "trl":
                    cmd = [sys.executable, str(ROOT / "bench" / "baseline_trl_defaults.py"), model_dir,
                           str(train_file), str(out_root), json.dumps({"epochs": 1, "r": run.method.r,
                                                                       "alpha": run.method.alpha})]
                else:
                    backend = ["backend=axolotl"] if kind == "axolotl" else []
                    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *over, *backend, f"output_root={out_root}"]
                t0, rss_kib, out = _run(cmd, env)
                if kind == "trl":
                    rec = json.loads(out.strip().splitlines()[-1])
                    tokens, runtime = rec["tokens"], rec["train_runtime"]
                else:
                    rec = json.loads(sorted(out_root.glob("*/*/summary.json"))[-1].read_text())
                    tokens, runtime = rec["tokens"], rec["train_runtime_s"]
                row = {"useful_tps": useful / runtime, "tps": tokens / runtime, "setup_s": rec["train_begin_unix"] - t0,
                       "first_step_s": rec["first_step_unix"] - t0, "rss_mib": rss_kib / 1024, "runtime_s": runtime}
                got[kind].append(row)
                print(f"round {i + 1}/{args.rounds} {kind:8s} useful tok/s {row['useful_tps']:6.1f}  non-pad tok/s "
                      f"{row['tps']:6.1f}  setup {row['setup_s']:5.1f} s  first step {row['first_step_s']:5.1f} s  "
                      f"train {runtime:6.1f} s  peak RSS {row['rss_mib']:6.0f} MiB", file=sys.stderr, flush=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in got[kind])

    lines = [f"### The real model: SmolLM2-135M-Instruct, {args.examples} Đà Lạt examples x 1 epoch, "
             f"{args.rounds} alternating rounds (fresh processes, 2 CPU cores, fp32)", "",
             f"Useful tokens: the {useful:,} assistant tokens of the {args.examples} examples ({total:,} tokens in "
             "all); the same for every system.", "",
             "| metric | " + " | ".join(f"{k} (median)" for k in systems) + " | "
             + " | ".join(f"native / {k} (min / median / max)" for k in systems if k != "native") + " |",
             "|---|" + "---:|" * len(systems) + "---|" * (len(systems) - 1)]
    for key, label, fmt in [("useful_tps", "useful tokens/s (higher is better)", "{:.1f}"),
                            ("tps", "non-padding tokens/s, as each Trainer counts", "{:.1f}"),
                            ("setup_s", "time to the first step: process start to training loop (s)", "{:.1f}"),
                            ("first_step_s", "process start to the end of the first step (s)", "{:.1f}"),
                            ("runtime_s", "training time (s)", "{:.1f}"),
                            ("rss_mib", "peak RSS of the process tree (MiB)", "{:.0f}")]:
        cells = [fmt.format(med(k, key)) for k in systems]
        ratios = [_stats([a[key] / b[key] for a, b in zip(got["native"], got[k])])
                  for k in systems if k != "native" and "native" in got]
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    table = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real.md").write_text(table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
