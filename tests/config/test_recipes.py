"""Every recipe composes and validates; each opens with its command and purpose and holds only deltas."""

from __future__ import annotations

import pytest
import yaml

from tuneforge.config.compose import load_run_config
from tuneforge.paths import recipes_dir

RECIPES = sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def test_required_recipes_exist() -> None:
    for name in ("lora-tiny", "qlora-tiny", "full-tiny", "qlora-llama", "lora-llama", "full-llama"):
        assert name in RECIPES
    assert any(r in RECIPES for r in ("lora-qwen", "lora-mistral"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_and_validates(recipe: str) -> None:
    text = (recipes_dir() / f"{recipe}.yaml").read_text()
    # a recipe that starts from the newest run of another (init.run=latest) needs that run; a fresh clone has none
    starts_from_run = "run: latest" in text
    run = load_run_config([f"recipe={recipe}", *(["init.run=null"] if starts_from_run else [])])
    assert run.name == recipe
    method = recipe.split("-")[0]
    if method in ("dpo", "orpo", "kto"):  # a preference recipe is named by its objective, on a LoRA/QLoRA/full base
        assert run.objective.name == method and run.method.name in ("full", "lora", "qlora")
    elif method == "openai":  # a hosted recipe is named by its backend (OpenAI picks how its model is tuned)
        assert run.backend.name == "openai" and run.method.name == "full"
    elif method == "embed":  # embed-*: an embedding model (backend=sentence-transformers), full or LoRA
        assert run.backend.name == "sentence-transformers" and run.method.name in ("full", "lora")
    else:
        assert run.method.name == method
    if method == "qlora":
        assert run.method.quantization.bits == 4


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_header_and_deltas(recipe: str) -> None:
    text = (recipes_dir() / f"{recipe}.yaml").read_text()
    lines = text.splitlines()
    assert "# @package _global_" in lines[:3]
    header = [ln for ln in lines if ln.startswith("#")]
    assert any(f"recipe={recipe}" in ln or (recipe == "lora-tiny" and "make train" in ln) for ln in header), \
        "the recipe must open with the command that runs it"
    body = yaml.safe_load(text)
    assert body["name"] == recipe
    # deltas only: no recipe restates a whole group
    for group in ("model", "dataset", "backend", "launcher"):
        assert group not in body or len(body[group]) < 4, f"{recipe} restates {group}: use a defaults override"


def test_real_model_recipes_plan_without_weights() -> None:
    from tuneforge.plan import make_plan

    plan = make_plan(load_run_config(["recipe=qlora-llama"]))
    text = plan.render()
    assert "meta-llama/Llama-3.1-8B" in text
    assert "nf4" in text
