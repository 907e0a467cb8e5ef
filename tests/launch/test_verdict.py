"""`plan`'s first screen (fits? how long? what cost?) and the defects of the old plan output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneforge.config.compose import load_run_config
from tuneforge.estimate import estimate_memory
from tuneforge.plan import make_plan
from tuneforge.verdict import DataSize, flops_per_token, gpu_table, make_verdict

REPO = Path(__file__).resolve().parents[2]


def _plan_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", "plan", *args, "--out", str(tmp_path)],
                          capture_output=True, text=True, check=False, cwd=REPO)


def test_first_screen_answers_fits_how_long_cost(tmp_path: Path) -> None:
    proc = _plan_cli(tmp_path, "recipe=qlora-llama")
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.splitlines()[:12]
    text = "\n".join(head)
    assert head[1].startswith("fits?      YES:") and "of 24 GiB per GPU" in head[1] and "rtx4090-24g" in head[1]
    assert any(ln.startswith("how long?") and "tokens/step" in ln for ln in head)
    assert "GPU-hours at 165 TFLOP/s bf16 peak x MFU 0.35" in text
    assert any(ln.startswith("cost?") and "$0.69/GPU-h" in ln for ln in head)
    assert "OpenAI fine-tuning" in text
    assert "ESTIMATE" in text  # the gated tokenizer is not here: labelled estimate, not a failure
    assert "next:      tuneforge train recipe=qlora-llama" in text
    assert max(len(ln) for ln in head) <= 120
    # the resolved config and the files are behind --full
    assert "# resolved config" not in proc.stdout
    full = _plan_cli(tmp_path, "recipe=qlora-llama", "--full")
    assert "# resolved config" in full.stdout and full.stdout.index("fits?") < full.stdout.index("# resolved")
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["fits"] is True and verdict["gpu"] == "rtx4090-24g" and verdict["tokens_exact"] is False
    assert "# resolved config" in (tmp_path / "plan.txt").read_text()  # plan.txt keeps everything


def test_verdict_says_no_and_what_to_change() -> None:
    run = load_run_config(["recipe=lora-llama", "gpu=l4-24g", "hparams.gradient_checkpointing=false"])
    plan = make_plan(run, for_target=True)
    lines = plan.verdict.render()
    assert lines[0].startswith("fits?      NO:") and "of 22.5 GiB" in lines[0] and "l4-24g" in lines[0]
    assert "hparams.gradient_checkpointing=true" in lines[1] and "method=qlora" in lines[1]
    assert plan.verdict.fits is False and "does not fit" in plan.next_command()


def test_launcher_gpu_memory_is_the_users_budget_over_the_gpu_type() -> None:
    run = load_run_config(["recipe=qlora-llama", "gpu=h100-80g", "launcher.gpu_memory_gb=10"])
    v = make_plan(run, for_target=True).verdict
    assert v.limit_gib == 10 and v.fits is False and "launcher.gpu_memory_gb=10" in v.render()[0]


def test_time_and_cost_arithmetic() -> None:
    run = load_run_config(["recipe=lora-llama", "gpu=a100-80g", "hparams.epochs=2"])
    data = DataSize(examples=1000, tokens=4_096_000, exact=True, source="given")
    v = make_verdict(run, estimate_memory(run), data)
    h = run.hparams  # packed: 4 x 4 x 1 x 2048 tokens per step
    assert v.tokens_per_step == h.micro_batch_size * h.grad_accumulation * h.seq_len
    assert v.steps == 2 * -(-(4_096_000 // h.seq_len) // (h.micro_batch_size * h.grad_accumulation))
    # LoRA with checkpointing: 6 FLOPs/param/token (+ attention); time at 312 TFLOP/s x 0.35
    params = 8.03e9
    assert flops_per_token(run) == pytest.approx(6 * params + 12 * 32 * 4096 * 2048, rel=1e-9)
    assert v.wall_s == pytest.approx(v.steps * v.tokens_per_step * flops_per_token(run) / (312e12 * 0.35))
    assert v.usd == pytest.approx(v.wall_s / 3600 * 1.79)
    full = load_run_config(["recipe=full-llama", "gpu=a100-80g", "hparams.gradient_checkpointing=false"])
    assert flops_per_token(full) == pytest.approx(6 * params + 12 * 32 * 4096 * 2048)


def test_unpacked_steps_count_examples() -> None:
    run = load_run_config(["recipe=lora-tiny", "hparams.epochs=3", "hparams.max_steps=-1"])
    v = make_verdict(run, estimate_memory(run), DataSize(examples=100, tokens=10_000, exact=True))
    assert v.steps == 3 * 25 and v.tokens_per_step == 4 * 100  # micro batch 4, 100 tokens/example
    assert v.wall_s is None and v.fits is None  # no GPU type named: no time, no verdict


def test_gpu_table_and_typo() -> None:
    table = gpu_table()
    for name in ("a100-80g", "h100-80g", "l4-24g", "rtx4090-24g"):
        assert f"| {name} |" in table
    assert "| h100-80g | 79.6 | 989 |" in table
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_run_config(["gpu=a100"])
    assert "a100-80g" in str(err.value)
    with pytest.raises(ConfigError, match="gpu.mfu=1.5 must be in"):
        load_run_config(["gpu=a100-80g", "gpu.mfu=1.5"])


def test_gpu_recipe_planned_on_a_cpu_host_describes_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # this host has no GPU, whatever it has
    run = load_run_config(["recipe=qlora-llama", "backend=axolotl"])
    planned = yaml.safe_load(make_plan(run, for_target=True).artifacts["axolotl.yaml"])
    assert planned["bf16"] != False and planned["tf32"] != False  # noqa: E712 - "auto" or True, never off
    here = yaml.safe_load(make_plan(run).artifacts["axolotl.yaml"])  # what `train` on this host writes
    assert here["bf16"] is False and here["tf32"] is False
    tiny = yaml.safe_load(make_plan(load_run_config(["recipe=lora-tiny", "backend=axolotl"]),
                                    for_target=True).artifacts["axolotl.yaml"])
    assert tiny["bf16"] is False  # a CPU recipe stays a CPU recipe


def test_replan_removes_stale_files_and_commands_sh_runs_as_written(tmp_path: Path) -> None:
    assert _plan_cli(tmp_path, "recipe=lora-tiny", "backend=axolotl").returncode == 0
    assert (tmp_path / "axolotl.yaml").is_file()
    proc = _plan_cli(tmp_path, "recipe=lora-tiny")
    assert proc.returncode == 0 and not (tmp_path / "axolotl.yaml").exists()
    assert "axolotl.yaml" not in proc.stdout.splitlines()[-1]
    sh = (tmp_path / "commands.sh").read_text()
    assert "<timestamp>" not in sh.split("RUN_DIR=", 1)[1].split("\n", 1)[0]
    assert '-m tuneforge.worker "$RUN_DIR"' in sh
    # the script's copy step works: it fills RUN_DIR with the plan's files (the worker line is left out here)
    runnable = "\n".join(ln for ln in sh.splitlines() if "tuneforge.worker" not in ln)
    script = tmp_path / "copy-only.sh"
    script.write_text(runnable)
    subprocess.run(["bash", str(script)], check=True, env={"RUN_DIR": str(tmp_path / "run"), "PATH": "/usr/bin:/bin"})
    assert (tmp_path / "run" / "config.yaml").read_text() == (tmp_path / "config.yaml").read_text()


def test_data_hint_names_the_recipe() -> None:
    from tuneforge.data.plan_notes import plan_notes

    run = load_run_config(["recipe=qlora-llama"])
    assert not any("..." in n for n in plan_notes(run))
    v = make_plan(run, for_target=True).verdict
    assert "make data recipe=qlora-llama" in v.data.source
