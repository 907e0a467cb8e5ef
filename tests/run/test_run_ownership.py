"""Issue 12 §1: a run directory belongs to one run. Nothing tuneforge did not create is touched; a second
writer is refused naming the holder; another config never reuses a run directory; names are atomic."""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.config.compose import load_run_config
from tuneforge.errors import ConfigError, LaunchError
from tuneforge.run_ownership import LOCK_NAME, RunDirLock, claim_run_dir, reset_bookkeeping
from tuneforge.rundir import atomic_write_json, new_run_dir, write_config

BASE = ["recipe=lora-tiny", "dataset=sample-chat"]


def test_foreign_directory_is_refused_and_left_untouched(tmp_path: Path, capsys) -> None:
    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "IMPORTANT.txt").write_text("x\n")
    rc = main(["train", "recipe=full-tiny", "dataset=sample-chat", "hparams.max_steps=2", f"run_dir={mine}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "not a tuneforge run directory" in err and "model" in err
    assert (mine / "model" / "IMPORTANT.txt").read_text() == "x\n"
    assert sorted(p.name for p in mine.iterdir()) == ["model"], "not even a lock file in a foreign directory"


def test_run_of_another_config_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    first = load_run_config([*BASE, f"run_dir={d}", "method.r=8"])
    write_config(first, d)
    atomic_write_json(d / "summary.json", {"name": first.name, "run_dir": str(d), "backend": "native",
                                           "wall_time_s": 1.0, "steps": 40})  # a whole summary
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(ConfigError, match=r"holds a run of another config.*\n.*method\.r: 8 -> 16"):
        claim_run_dir(load_run_config([*BASE, f"run_dir={d}", "method.r=16"]))
    after = {p.name: p.read_bytes() for p in d.iterdir() if not p.name.startswith(LOCK_NAME)}
    assert after == before
    # the same config again: the run is complete, so there is nothing to resume
    with pytest.raises(ConfigError, match="already holds this run, complete"):
        claim_run_dir(load_run_config([*BASE, f"run_dir={d}", "method.r=8"]))
    # training it further (more steps) is a resume of the same run
    claim = claim_run_dir(load_run_config([*BASE, f"run_dir={d}", "method.r=8", "hparams.max_steps=80"]))
    try:
        assert claim.resuming and claim.path == d.resolve()
    finally:
        claim.release()


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    from tuneforge.train import train

    d = tmp_path / "shared-run"
    d.mkdir()
    held = RunDirLock(d / LOCK_NAME).acquire()  # another open file description: flock conflicts as between processes
    try:
        with pytest.raises(LaunchError, match=rf"in use by pid {__import__('os').getpid()} on host "
                                              rf"{socket.gethostname()}"):
            train(load_run_config([*BASE, f"run_dir={d}", "hparams.max_steps=2"]), quiet=True)
    finally:
        held.release()
    assert sorted(p.name for p in d.iterdir()) == [LOCK_NAME], "the refused run wrote nothing"


def _make_dirs(root: str, q) -> None:  # a child process: new_run_dir at the same moment as its siblings
    run = load_run_config([*BASE, f"output_root={root}"])
    q.put(str(new_run_dir(run)))


def test_new_run_dir_is_atomic_across_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    for trial in range(5):
        q = ctx.Queue()
        procs = [ctx.Process(target=_make_dirs, args=(str(tmp_path / f"t{trial}"), q)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        dirs = [q.get(timeout=5) for _ in procs]
        assert len(set(dirs)) == 3, dirs


def test_resume_clears_the_last_attempts_bookkeeping(tmp_path: Path) -> None:
    d = tmp_path / "run"
    (d / "checkpoints" / "checkpoint-30").mkdir(parents=True)
    (d / "FAILED").write_text("KeyboardInterrupt\n")
    (d / "metrics.jsonl").write_text("".join(json.dumps({"event": "train", "step": s, "loss": 1.0}) + "\n"
                                             for s in range(1, 39)) + '{"event": "tr')  # cut by the kill
    reset_bookkeeping(d, str(d / "checkpoints" / "checkpoint-30"))
    assert not (d / "FAILED").exists()
    recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r.get("event") == "train"] == list(range(1, 31))
    assert recs[-1] == {**recs[-1], "event": "resume", "step": 30, "checkpoint": "checkpoint-30"}
