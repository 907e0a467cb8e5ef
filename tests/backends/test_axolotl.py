"""axolotl backend: the translation, axolotl's own validator on every recipe x method, and real tiny
trainings on CPU through axolotl (LoRA, QLoRA) with the same run-directory layout as the native backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import read_metrics
from tuneforge.backends.axolotl import (
    AxolotlBackend,
    build_axolotl_config,
    render_axolotl_yaml,
    validate_axolotl_config,
)
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError
from tuneforge.models import CHAT_TEMPLATES
from tuneforge.paths import recipes_dir

RECIPES = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
RUN_DIR = Path("/runs/x")


def _cfg(*overrides: str) -> dict:
    return build_axolotl_config(load_run_config(["backend=axolotl", *overrides]), RUN_DIR)


def test_cpu_lora_translation() -> None:
    cfg = _cfg("recipe=lora-tiny", "backend.device=cpu")
    assert cfg["adapter"] == "lora" and (cfg["lora_r"], cfg["lora_alpha"]) == (8, 16)
    assert cfg["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for key in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel", "bf16", "fp16",
                "tf32"):
        assert cfg[key] is False, key
    assert Path(cfg["base_model"]).name and cfg["datasets"][0]["type"] == "chat_template"
    assert cfg["output_dir"] == "/runs/x/checkpoints" and cfg["max_steps"] == 40
    assert cfg["plugins"] == ["tuneforge.backends.axolotl.TuneforgeAxolotlPlugin"]
    assert yaml.safe_load(render_axolotl_yaml(cfg)) == cfg


def test_gpu_qlora_translation_with_zero2_and_wandb() -> None:
    cfg = _cfg("recipe=qlora-llama", "backend.device=cuda", "launcher=accelerate", "launcher.gpus_per_node=4",
               "distributed=zero2", "tracking=wandb")
    assert cfg["adapter"] == "qlora" and cfg["load_in_4bit"] is True
    assert cfg["bnb_config_kwargs"] == {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                        "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "bfloat16"}
    assert cfg["base_model"] == "meta-llama/Llama-3.1-8B" and cfg["deepspeed"] == "/runs/x/ds_config.json"
    assert (cfg["bf16"], cfg["tf32"]) == ("auto", "auto") and "lora_mlp_kernel" not in cfg
    assert (cfg["sample_packing"], cfg["gradient_checkpointing"], cfg["sequence_len"]) == (True, True, 2048)
    assert (cfg["micro_batch_size"], cfg["gradient_accumulation_steps"], cfg["num_epochs"]) == (2, 8, 3.0)
    assert cfg["chat_template"] == "jinja" and cfg["chat_template_jinja"] == CHAT_TEMPLATES["llama3"]
    assert cfg["wandb_project"] == "tuneforge" and cfg["wandb_mode"] == "offline"


def test_full_translation_and_escape_hatch() -> None:
    cfg = _cfg("recipe=full-tiny", "+backend.additional_parameters.lr_scheduler_kwargs={num_cycles: 2}")
    assert "adapter" not in cfg and "lora_r" not in cfg
    assert cfg["lr_scheduler_kwargs"] == {"num_cycles": 2}


@pytest.mark.parametrize("overrides, needle", [
    (["recipe=lora-tiny", "method.bias=all"], "axolotl trains LoRA without bias terms"),
    (["recipe=lora-tiny", "backend.device=tpu"], "choose one of: auto, cpu, cuda"),
    (["recipe=lora-tiny", "backend.device=cpu", "model.attn_implementation=flash_attention_2"], "needs a CUDA GPU"),
    (["recipe=lora-tiny", "launcher=accelerate", "launcher.gpus_per_node=2", "launcher.cpu=true"],
     "runs 2 processes only on GPUs"),
])
def test_refusals(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(["backend=axolotl", *overrides])
    assert needle in str(err.value)


@pytest.mark.integration
@pytest.mark.axolotl
def test_axolotl_validator_accepts_every_recipe_and_method() -> None:
    checked = 0
    for recipe in RECIPES:
        if recipe.startswith(("openai-", "embed-")):  # hosted / embedding recipes: other backends by design
            continue
        for method in ("full", "lora", "qlora"):
            overrides = [f"recipe={recipe}", "backend=axolotl", f"method={method}"]
            if "run: latest" in (recipes_dir() / f"{recipe}.yaml").read_text():
                overrides.append("init.run=null")  # axolotl starts from base_model (a merged parent) only
            if method == "qlora" and "tiny" in recipe:
                overrides.append("method.quantization.compute_dtype=float32")
            cfg = build_axolotl_config(load_run_config(overrides), RUN_DIR)
            validated = validate_axolotl_config(cfg)
            assert validated["micro_batch_size"] == cfg["micro_batch_size"]
            assert validated.get("adapter") == cfg.get("adapter")
            checked += 1
    assert checked == 3 * len([r for r in RECIPES if not r.startswith(("openai-", "embed-"))])


@pytest.mark.axolotl
def test_axolotl_validator_rejection_is_a_config_error() -> None:
    cfg = _cfg("recipe=qlora-tiny", "method.quantization.compute_dtype=float32")
    cfg["load_in_4bit"] = False
    with pytest.raises(ConfigError) as err:
        validate_axolotl_config(cfg, source="axolotl.yaml")
    assert "axolotl rejects axolotl.yaml" in str(err.value) and "load_in_4bit" in str(err.value)


def _train(out_root: Path, recipe: str, *extra: str) -> Path:
    from tuneforge.train import train

    run = load_run_config([f"recipe={recipe}", "backend=axolotl", f"output_root={out_root}",
                           "hparams.max_steps=12", "hparams.eval_steps=null", "hparams.logging_steps=1",
                           "backend.dataset_processes=1", *extra])
    summary = train(run, quiet=True)
    return Path(summary["run_dir"])


def _assert_parity_layout_and_learning(run_dir: Path) -> None:
    from peft import PeftModel

    from tuneforge.models import load_model
    from tuneforge.rundir import read_config

    for name in ("config.yaml", "axolotl.yaml", "plan.txt", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "RUNNING").exists()
    adapter = run_dir / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (adapter / name).is_file(), name
    recs = [r for r in read_metrics(run_dir) if "loss" in r]
    assert len(recs) == 12 and all({"step", "loss", "lr"} <= r.keys() for r in recs)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["backend"] == "axolotl" and summary["weights"] == "adapter" and summary["steps"] == 12
    first = sum(r["loss"] for r in recs[:3]) / 3
    last = sum(r["loss"] for r in recs[-3:]) / 3
    assert last < first, f"loss did not go down: {first:.4f} -> {last:.4f}"
    run = read_config(run_dir)
    model = PeftModel.from_pretrained(load_model(run), str(adapter))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0


@pytest.mark.integration
@pytest.mark.axolotl
def test_axolotl_lora_trains_on_cpu(out_root: Path) -> None:
    run_dir = _train(out_root, "lora-tiny")
    _assert_parity_layout_and_learning(run_dir)
    text = (run_dir / "axolotl.yaml").read_text()
    assert AxolotlBackend().artifacts(load_run_config(["recipe=lora-tiny", "backend=axolotl",
                                                       "hparams.max_steps=12", "hparams.eval_steps=null",
                                                       "backend.dataset_processes=1"]), run_dir)["axolotl.yaml"] \
        == text, "the run wrote a different axolotl.yaml than its plan shows"
    # eval and merge read only the run directory: an axolotl run works exactly like a native one
    from tuneforge.evaluation.metrics import METRICS
    from tuneforge.evaluation.runner import evaluate_run
    from tuneforge.merge import merge_run
    from tuneforge.schema.evaluation import EvalConfig

    results = evaluate_run(run_dir, eval_config=EvalConfig(max_samples=4, max_new_tokens=8, batch_size=4),
                           quiet=True)
    assert {m.key for m in METRICS} <= results["base"].keys() and (run_dir / "eval.json").is_file()
    assert results["finetuned"]["loss"] < results["base"]["loss"]
    info = merge_run(run_dir, n_prompts=2, quiet=True)
    assert info["parity"]["passed"] and (run_dir / "merged" / "parity.json").is_file()


@pytest.mark.axolotl
@pytest.mark.slow
def test_axolotl_qlora_trains_on_cpu(out_root: Path) -> None:
    run_dir = _train(out_root, "qlora-tiny")
    assert yaml.safe_load((run_dir / "axolotl.yaml").read_text())["load_in_4bit"] is True
    _assert_parity_layout_and_learning(run_dir)


@pytest.mark.axolotl
@pytest.mark.slow
def test_axolotl_resumes_from_the_latest_complete_checkpoint(out_root: Path) -> None:
    """Issue 12 §3: axolotl's own auto-resume took the highest-numbered checkpoint, torn or not."""
    import shutil

    run_dir = out_root / "axo"
    extra = [f"run_dir={run_dir}", "hparams.save_steps=2", "hparams.max_steps=4", "hparams.save_total_limit=3"]
    _train(out_root, "lora-tiny", *extra)
    assert (run_dir / "checkpoints" / "checkpoint-4" / "tuneforge-complete.json").is_file(), "sealed"
    w = run_dir / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[:-64])  # torn weights, trainer_state.json intact
    shutil.rmtree(run_dir / "adapter")
    (run_dir / "summary.json").unlink()
    _train(out_root, "lora-tiny", *extra)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-2" and summary["steps"] == 4
    assert [r["step"] for r in read_metrics(run_dir) if r.get("event") == "train"] == [1, 2, 3, 4]


@pytest.mark.axolotl
@pytest.mark.parametrize("loss, rl", [("sigmoid", "dpo"), ("ipo", "ipo"), ("simpo", "simpo")])
def test_dpo_translation_passes_axolotls_validator(loss: str, rl: str) -> None:
    cfg = _cfg("recipe=lora-tiny", "backend.device=cpu", "objective=dpo", "dataset=dalat-pairs",
               f"objective.loss_type={loss}", "objective.beta=0.2", "objective.max_prompt_length=64")
    assert (cfg["rl"], cfg["rl_beta"], cfg["max_prompt_len"]) == (rl, 0.2, 64)
    assert cfg["datasets"][0]["type"] == "chat_template.default" and cfg["datasets"][0]["field_messages"] == "prompt"
    validated = validate_axolotl_config(cfg)
    assert validated["rl"] == rl and validated["rl_beta"] == 0.2


@pytest.mark.axolotl
def test_dpo_sft_weight_becomes_axolotls_loss_list() -> None:
    cfg = _cfg("recipe=lora-tiny", "backend.device=cpu", "objective=dpo", "dataset=dalat-pairs",
               "objective.sft_weight=0.5")
    assert (cfg["dpo_loss_type"], cfg["dpo_loss_weights"]) == (["sigmoid", "sft"], [1.0, 0.5])
    validated = validate_axolotl_config(cfg)
    assert validated["dpo_loss_type"] == ["sigmoid", "sft"] and validated["dpo_loss_weights"] == [1.0, 0.5]


@pytest.mark.parametrize("overrides, needle", [
    (["objective=orpo"], "objective=orpo is not trained by backend=axolotl"),
    (["objective=dpo", "objective.loss_type=hinge"], "axolotl's rl: has no such loss"),
    (["objective=dpo", "objective.max_completion_length=32"], "axolotl has max_prompt_len only"),
])
def test_axolotl_preference_refusals(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_run_config(["backend=axolotl", "recipe=lora-tiny", "dataset=dalat-pairs", *overrides])
