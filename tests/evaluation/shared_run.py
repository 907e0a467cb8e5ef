"""One tiny LoRA run trained once per test session and shared by the eval, report, merge, chat and tracking
tests (they copy it before changing anything). It trains with tracking=wandb, a fake WANDB_API_KEY in the
environment, HOME pointed at an empty directory, and eval.after_training=true, so the run directory it
leaves is what `make train tracking=wandb eval.after_training=true` leaves a user."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

FAKE_WANDB_KEY = "tf-fake-wandb-key-7d3e0c5a9b1f4e2d8c6a"
# enough steps, at a high learning rate, for the fine-tuned test loss to be clearly below the base's; the
# small sample-chat dataset keeps its test split (and so the eval) to a few examples
TRAIN_OVERRIDES = ["recipe=lora-tiny", "dataset=sample-chat", "hparams.max_steps=30", "hparams.eval_steps=10",
                   "optim.lr=3e-2", "tracking=wandb", "eval.after_training=true", "eval.max_new_tokens=16",
                   "eval.batch_size=8"]


@dataclass(frozen=True)
class SharedRun:
    run_dir: Path
    home: Path  # HOME during training: wandb must have written nothing there
    summary: dict

    def copy(self, dest: Path) -> Path:
        """A private copy for a test that changes or breaks the run directory."""
        shutil.copytree(self.run_dir, dest, ignore=shutil.ignore_patterns("checkpoints", "wandb"))
        return dest


_RUNS: dict[str, SharedRun] = {}


def trained_lora_run(factory: pytest.TempPathFactory) -> SharedRun:
    if "lora" not in _RUNS:
        from tuneforge.config.compose import load_run_config
        from tuneforge.train import train

        root = factory.mktemp("shared-lora-run")
        home = root / "home"
        home.mkdir()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
            mp.setenv("HOME", str(home))
            for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR",
                        "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
                mp.delenv(var, raising=False)
            run = load_run_config([*TRAIN_OVERRIDES, f"output_root={root / 'outputs'}"])
            summary = train(run, quiet=True)
            assert os.environ["WANDB_API_KEY"] == FAKE_WANDB_KEY  # tracking restored what it hid
        _RUNS["lora"] = SharedRun(Path(summary["run_dir"]), home, summary)
    return _RUNS["lora"]
