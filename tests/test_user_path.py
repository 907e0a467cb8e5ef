"""The everyday path: errors in plain words with the corrected command, recipes you can list and copy, recipe
files outside recipes/, runs you can name (run=latest, run=<recipe>), `tuneforge runs` and its comparison."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuneforge.cli import main

REPO = Path(__file__).resolve().parents[1]


def _err(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize(("argv", "wanted"), [
    (["train", "--recipe", "lora-tiny"], "did you mean: tuneforge train recipe=lora-tiny"),
    (["train", "--recipe=lora-tiny"], "did you mean: tuneforge train recipe=lora-tiny"),
    (["train", "optim.lr", "1e-4"], "did you mean: tuneforge train optim.lr=1e-4"),
    (["plan", "lora-tiny"], "did you mean: tuneforge plan recipe=lora-tiny"),
    (["train", "method=qlora2"], "unknown method 'qlora2' (did you mean method=qlora?)"),
    (["train", "lr=1e-4"], "unknown config key 'lr' (did you mean 'optim.lr'?)"),
    (["train", "hparams.lr=1e-4"], "(did you mean 'optim.lr'?)"),
    (["train", "recipe=qlora_llama"], "unknown recipe 'qlora_llama' (did you mean recipe=qlora-llama?)"),
    (["trian"], "unknown command 'trian' (did you mean 'train'?)"),
])
def test_slips_get_one_line_with_the_fix(capsys: pytest.CaptureFixture, tmp_path: Path, argv: list[str],
                                         wanted: str) -> None:
    before = set(Path.cwd().glob("outputs/*/*"))
    err = _err(capsys, *argv, f"output_root={tmp_path}") if argv != ["trian"] else _err(capsys, *argv)
    first = err.splitlines()[0]
    assert wanted in first, err
    assert "Exception" not in err and "EQUAL" not in err and "Could not find" not in err
    assert err.count("did you mean") == 1  # said once
    assert not any(tmp_path.iterdir()) and set(Path.cwd().glob("outputs/*/*")) == before  # no run directory


def test_recipes_and_cp_and_a_recipe_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "qlora-llama" in listing and "QLoRA on Llama 3.1 8B" in listing and "@package" not in listing
    mine = tmp_path / "my.yaml"
    assert main(["cp", "lora-tiny", str(mine)]) == 0
    capsys.readouterr()
    assert "name: my" in mine.read_text()
    assert main(["cp", "lora-tiny", str(mine)]) == 2  # never overwrites silently
    assert "exists" in capsys.readouterr().err
    mine.write_text(mine.read_text().replace("max_steps: 40", "max_steps: 7"))
    from tuneforge.config.compose import load_run_config

    for argv in ([str(mine)], [f"recipe={mine}"]):
        run = load_run_config(argv)
        assert run.name == "my" and run.hparams.max_steps == 7
    assert load_run_config(["recipes/lora-tiny.yaml"]).name == "lora-tiny"  # a file inside recipes/
    bad = tmp_path / "bad.yaml"
    bad.write_text("hparams:\n  max_steps: 3\n")
    err = _err(capsys, "plan", str(bad))
    assert "@package _global_" in err


def test_version(capsys: pytest.CaptureFixture) -> None:
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tuneforge {version('tuneforge')}"


def _train(root: Path, *extra: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "tuneforge.cli", "train", "recipe=lora-tiny", "hparams.max_steps=3",
                           "hparams.eval_steps=null", f"output_root={root}", *extra],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "next:" in proc.stdout and "make eval run=" in proc.stdout  # the next command, after training
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("run dir"))
    return Path(line.split()[-1])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("runs") / "outputs"
    first = _train(root)
    time.sleep(1.1)  # run directories are named by the second
    second = _train(root, "optim.lr=1e-3")
    return root, first, second


@pytest.mark.integration
def test_runs_lists_status_and_losses(two_runs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture) -> None:
    root, first, second = two_runs
    # a run killed mid-training: a real process, SIGKILLed once its RUNNING marker exists
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "train", "recipe=lora-tiny",
                             "hparams.max_steps=100000", f"output_root={root}", "name=killed"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(root.glob("killed/*/RUNNING")) and time.time() < deadline:
            time.sleep(0.2)
        assert main(["runs", f"output_root={root}"]) == 0
        assert "running" in capsys.readouterr().out
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert main(["runs", f"output_root={root}"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if "lora-tiny" in ln or "killed" in ln]
    assert len(rows) == 3
    assert "killed" in rows[0].split()[1]  # newest first
    assert all(r.split()[1] == "complete" for r in rows[1:])
    assert "->" in rows[1]  # first -> last loss


@pytest.mark.integration
def test_run_latest_and_recipe_name_and_compare(two_runs: tuple[Path, Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.runs import resolve_run

    root, first, second = two_runs
    assert resolve_run("latest", root) == second
    assert resolve_run("lora-tiny", root) == second
    assert resolve_run(str(first), root) == first
    assert main(["runs", "compare", str(first), "latest", f"output_root={root}", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "compare.md").read_text()
    assert "`optim.lr`" in md and "`hparams.max_steps`" not in md  # only what differs
    assert "| last loss |" in md and "| eval loss |" in md
    html = (tmp_path / "compare.html").read_text()
    assert "<table>" in html and "optim.lr" in html
    # eval/merge/chat without run= list the recent runs instead of a bare error
    monkeypatch.chdir(root.parent)  # outputs/ here, as in a checkout
    err = _err(capsys, "eval", "run=")
    assert "run=latest" in err and "outputs/lora-tiny/" + second.name in err


@pytest.mark.integration
def test_run_dir_latest_resumes_the_newest_run_of_the_recipe(two_runs: tuple[Path, Path, Path]) -> None:
    from tuneforge.config.compose import load_run_config
    from tuneforge.errors import ConfigError

    root, _, second = two_runs
    run = load_run_config(["recipe=lora-tiny", "run_dir=latest", f"output_root={root}"])
    assert Path(run.run_dir) == second.resolve()
    with pytest.raises(ConfigError, match="no run of full-tiny"):
        load_run_config(["recipe=full-tiny", "run_dir=latest", f"output_root={root}"])
