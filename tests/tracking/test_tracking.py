"""tracking=wandb logs config, train metrics and eval results offline inside the run directory (nothing in
HOME, no key anywhere); tracking=tensorboard writes event files; bad tracking settings fail at compose."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.evaluation.shared_run import FAKE_WANDB_KEY, SharedRun, trained_lora_run
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    return trained_lora_run(tmp_path_factory)


def test_wandb_offline_run_is_inside_the_run_directory(lora_run: SharedRun) -> None:
    runs = list((lora_run.run_dir / "wandb").glob("offline-run-*"))
    assert runs, sorted(p.name for p in (lora_run.run_dir / "wandb").iterdir())
    logs = [p for r in runs for p in r.glob("*.wandb")]
    assert logs
    data = b"".join(p.read_bytes() for p in logs)
    for key in (b"train/loss", b"eval/loss", b"test/finetuned/bleu", b"test/base/loss", b"lora-tiny"):
        assert key in data, key  # train metrics, val loss, eval results, config
    # wandb wrote nothing into HOME (its cache/config/data dirs are inside the run directory)
    assert not [p for p in lora_run.home.rglob("*") if "wandb" in p.name.lower()]


def test_api_key_never_reaches_the_run_directory(lora_run: SharedRun) -> None:
    secret = FAKE_WANDB_KEY.encode()
    leaked = [p for p in lora_run.run_dir.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert not leaked


def test_tensorboard_event_files(tmp_path: Path) -> None:
    from tensorboardX.proto import event_pb2

    from tuneforge.train import train

    run = load_run_config(["recipe=lora-tiny", "dataset=sample-chat", f"output_root={tmp_path}",
                           "hparams.max_steps=3",
                           "hparams.eval_steps=null", "tracking=tensorboard", "eval.after_training=true",
                           "eval.max_samples=2", "eval.max_new_tokens=4"])
    run_dir = Path(train(run, quiet=True)["run_dir"])
    files = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files
    tags = set()
    for f in files:  # TFRecord: u64 length, u32 crc, payload, u32 crc
        data, pos = f.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            tags.update(v.tag for v in event.summary.value)
            pos += 12 + n + 4
    assert {"train/loss", "test/base/loss", "test/finetuned/loss", "config/text_summary"} <= tags, tags


def test_bad_tracking_mode_fails_at_compose() -> None:
    with pytest.raises(ConfigError, match="tracking.mode='onlin' is not valid; choose one of: offline"):
        load_run_config(["tracking=wandb", "tracking.mode=onlin"])
