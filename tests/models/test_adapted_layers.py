"""LoRA on chosen layers (``method.layers_to_transform``) and the capped validation pass
(``hparams.max_eval_samples``): each reaches PEFT, axolotl, the estimate and the Trainer, or is refused."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.backends.axolotl import VAL_SUBSET, build_axolotl_config, data_paths, validate_axolotl_config
from tuneforge.config.compose import load_run_config
from tuneforge.estimate import lora_parameters, model_shape
from tuneforge.models import load_model
from tuneforge.strategies.registry import adapted_layers, get_strategy
from tuneforge.verdict import flops_per_token


def _lora_layers(model) -> set[int]:
    return {int(name.split(".layers.")[1].split(".")[0]) for name, _ in model.named_parameters()
            if "lora_A" in name}


def test_negative_indices_count_from_the_top() -> None:
    assert adapted_layers([-1, -2, 0], 30) == [0, 28, 29]
    assert adapted_layers(None, 30) is None


def test_only_the_chosen_layers_get_an_adapter() -> None:
    run = load_run_config(["recipe=lora-tiny", "method.layers_to_transform=[-1]"])
    model = get_strategy(run).build(run, load_model(run))
    assert _lora_layers(model) == {1}  # the tiny model has 2 layers; -1 is the top one
    every = load_run_config(["recipe=lora-tiny"])
    assert _lora_layers(get_strategy(every).build(every, load_model(every))) == {0, 1}


def test_estimate_and_flops_count_only_the_adapted_layers() -> None:
    top = load_run_config(["recipe=lora-smollm2"])  # the recipe adapts the top 15 of 30 layers
    every = load_run_config(["recipe=lora-smollm2", "method.layers_to_transform=null"])
    shape, exact = model_shape(top)
    assert exact and shape.layers == 30
    assert lora_parameters(top, shape) * 2 == lora_parameters(every, shape)
    # forward 2N + backward through half the decoder (2N x 0.5) instead of all of it (2N)
    assert flops_per_token(top) < flops_per_token(every)
    assert abs(flops_per_token(top) - flops_per_token(every) / 4 * 3) / flops_per_token(every) < 0.05


def test_axolotl_gets_peft_layers_to_transform_and_accepts_it() -> None:
    run = load_run_config(["recipe=lora-smollm2", "backend=axolotl"])
    cfg = build_axolotl_config(run, Path("/runs/x"))
    assert cfg["peft_layers_to_transform"] == list(range(15, 30))
    validate_axolotl_config(cfg, normalize=False)  # axolotl's own schema takes the key


def test_max_eval_samples_caps_the_native_validation_pass(tmp_path: Path, caplog) -> None:
    from tuneforge.backends.native import NativeBackend

    run = load_run_config(["recipe=lora-tiny", "dataset=dalat-tourism", "hparams.max_eval_samples=3",
                           "hparams.max_steps=1", "hparams.packing=true", f"output_root={tmp_path}"])
    caplog.set_level("WARNING")
    trainer, _ = NativeBackend().build_trainer(run, tmp_path / "run")
    # packed: the 3 examples may share rows; each row lists the lengths of the examples in it
    assert sum(len(row) for row in trainer.eval_dataset["seq_lengths"]) == 3
    # TRL's "packing needs flash-attention" advice does not apply to sdpa without a KV cache (tested in
    # test_masking_and_packing), so it is not shown; other warnings are left alone
    assert not [r for r in caplog.records if "Flash Attention variant" in r.getMessage()]
    import logging

    assert not logging.getLogger("trl.trainer.sft_trainer").filters  # the filter lived only for the build


def test_max_eval_samples_gives_axolotl_the_first_rows(tmp_path: Path) -> None:
    run = load_run_config(["recipe=lora-tiny", "dataset=dalat-tourism", "backend=axolotl",
                           "hparams.max_eval_samples=4"])
    data = data_paths(run, prepare=True, run_dir=tmp_path)
    subset = (tmp_path / VAL_SUBSET).read_text(encoding="utf-8").splitlines()
    full = Path(data_paths(run, prepare=True)["val"]).read_text(encoding="utf-8").splitlines()
    assert data["val"] == tmp_path / VAL_SUBSET and data["val_rows"] == 4
    assert subset == full[:4] and all(json.loads(line)["messages"] for line in subset)
    cfg = build_axolotl_config(run, tmp_path, data=data)
    assert cfg["test_datasets"][0]["path"] == str(tmp_path / VAL_SUBSET)
    # plan (nothing prepared) names the same file
    assert build_axolotl_config(run, tmp_path)["test_datasets"][0]["path"] == str(tmp_path / VAL_SUBSET)
