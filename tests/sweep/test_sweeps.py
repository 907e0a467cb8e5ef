"""Sweeps through Hydra's multirun on lora-tiny: a grid with failing trials, an Optuna study that resumes,
and preflight errors that name the key. Trials are tiny (a few optimizer steps each)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from tuneforge.errors import ConfigError
from tuneforge.sweep.command import cmd_sweep

TINY = ["recipe=lora-tiny", "hparams.max_steps=4", "hparams.eval_steps=null"]


def _sweep_dir(out_root: Path) -> Path:
    (d,) = sorted((out_root / "sweeps" / "lora-tiny").glob("20*"))[-1:]
    return d


def _csv(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "results.csv").open() as f:
        return list(csv.DictReader(f))


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.integration
def test_grid_sweep_table_plot_and_failed_trials(out_root: Path, capsys: pytest.CaptureFixture) -> None:
    # 2 x 2 grid; optim.lr=-1 passes the preflight (first values only) and fails inside its trials
    status = cmd_sweep([*TINY, f"output_root={out_root}", "sweep=grid", "optim.lr=1e-2,-1", "method.r=4,8"])
    assert status == 0
    sweep_dir = _sweep_dir(out_root)
    rows = _csv(sweep_dir)
    assert len(rows) == 4
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "failed"]
    done, failed = rows[:2], rows[2:]
    # sorted by the objective; each row's numbers are its run's own summary
    assert float(done[0]["eval_loss"]) <= float(done[1]["eval_loss"])
    for r in done:
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert math.isclose(float(r["eval_loss"]), summary["eval_loss"])
        assert float(r["tokens_per_s"]) > 0 and float(r["wall_time_s"]) > 0
        assert r["optim.lr"] == "0.01" and r["method.r"] in ("4", "8")
    assert {r["method.r"] for r in done} == {"4", "8"}
    for r in failed:
        assert r["optim.lr"] == "-1" and "optim.lr" in r["error"] and "must be > 0" in r["error"]
        assert not (Path(r["run_dir"]) / "summary.json").exists()
    md = (sweep_dir / "results.md").read_text()
    best = done[0]
    assert "tuneforge train recipe=lora-tiny" in md and f"method.r={best['method.r']}" in md.split("## Best")[1]
    assert "## Failed trials" in md and "objective.png" in md
    assert _is_png(sweep_dir / "objective.png")
    out = capsys.readouterr().out
    assert "best     eval loss" in out and str(sweep_dir / "results.csv") in out


@pytest.mark.integration
def test_optuna_sweep_minimizes_and_resumes(out_root: Path) -> None:
    space = ["optim.lr=tag(log, interval(1e-3, 3e-2))", "method.r=choice(4, 8)"]
    args = [*TINY, f"output_root={out_root}", "sweep=optuna", *space]
    assert cmd_sweep([*args, "hydra.sweeper.n_trials=2"]) == 0
    first = _sweep_dir(out_root)
    rows = _csv(first)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert float(rows[0]["eval_loss"]) <= float(rows[1]["eval_loss"])
    assert all(1e-3 <= float(r["optim.lr"]) <= 3e-2 and r["method.r"] in ("4", "8") for r in rows)
    assert _is_png(first / "objective.png")
    db = out_root / "sweeps" / "lora-tiny" / "optuna.db"
    assert db.is_file()
    # the same command again continues the study stored in sqlite (and draws new points)
    assert cmd_sweep([*args, "hydra.sweeper.n_trials=1"]) == 0
    second = _sweep_dir(out_root)
    assert second != first
    assert "3 trials over all runs" in (second / "results.md").read_text()
    (new,) = _csv(second)
    assert new["optim.lr"] not in {r["optim.lr"] for r in rows}


@pytest.mark.parametrize(("args", "message"), [
    (["optim.lrr=1e-3,1e-2"], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    (["method.rank=choice(4,8)"], "unknown config key 'method.rank'"),
    (["sweep=optuna", "hydra.sweeper.params.hparams.epoch=choice(1,2)"], "'hparams.epoch'"),
    (["sweep=random"], "sweep='random' is not known; choose one of: grid, optuna"),
])
def test_sweep_over_unknown_key_is_named_before_any_trial(args: list[str], message: str, out_root: Path) -> None:
    with pytest.raises(ConfigError) as err:
        cmd_sweep([*TINY, f"output_root={out_root}", *args])
    assert message in str(err.value)
    assert not out_root.exists(), "a refused sweep leaves nothing behind"
