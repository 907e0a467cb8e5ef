"""The loss curves of a run (train loss per logging step, eval loss during training, the test losses of both
models as dashed lines) as a PNG, read from metrics.jsonl and eval.json."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any


def read_loss_history(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, eval) loss points by step from metrics.jsonl; the last eval record per step wins."""
    path = run_dir / "metrics.jsonl"
    train: list[tuple[int, float]] = []
    evals: dict[int, float] = {}
    if not path.is_file():
        return train, []
    for line in path.open(encoding="utf-8"):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a killed run
        step = rec.get("step")
        if not isinstance(step, int):
            continue
        if isinstance(rec.get("loss"), (int, float)):
            train.append((step, float(rec["loss"])))
        if isinstance(rec.get("eval_loss"), (int, float)):
            evals[step] = float(rec["eval_loss"])
    return train, sorted(evals.items())


def loss_curve_png(run_dir: Path, results: dict[str, Any]) -> bytes | None:
    train, evals = read_loss_history(run_dir)
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    try:
        if train:
            ax.plot(*zip(*train), color="#2563eb", lw=1.6, label="train loss")
        if evals:
            ax.plot(*zip(*evals), color="#ea580c", lw=1.8, marker="o", ms=4, label="eval loss (val split)")
        for key, color, label in (("base", "#6b7280", "test loss: base"),
                                  ("finetuned", "#16a34a", "test loss: fine-tuned")):
            if "loss" in results[key]:  # absent for a hosted model (not applicable)
                ax.axhline(results[key]["loss"], color=color, ls="--", lw=1.2, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (assistant tokens)")
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        # above the axes, so it never covers a curve
        ax.legend(frameon=False, fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


# --- markdown -----------------------------------------------------------------------------------------------
