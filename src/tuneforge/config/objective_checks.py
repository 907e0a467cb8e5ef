"""Compose-time checks of the objective axis and of where a run starts (``init.run``).

The backend a run names declares the objectives it trains (``Backend.objectives``) and refuses, in its own
``check``, the objective settings it cannot honour; here only what holds for every backend: the objective's
own ranges, the data shape it needs, and a starting run that exists and fits the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.schema.dataset import PREFERENCE_FORMATS
from tuneforge.schema.objective import objective_problems
from tuneforge.schema.run import RunConfig


def check_objective(run: RunConfig) -> Iterable[str]:
    from tuneforge.backends.registry import BACKENDS, get_backend

    o, ds = run.objective, run.dataset
    problems = list(objective_problems(o, run.hparams.seq_len))
    yield from problems
    if problems:
        return
    if run.backend.name in BACKENDS:
        trains = get_backend(run.backend.name).objectives
        if o.name not in trains:
            yield (f"objective={o.name} is not trained by backend={run.backend.name} (it trains: "
                   f"{', '.join(trains)}); choose another objective, or a backend that trains it "
                   f"({', '.join(b for b in BACKENDS if o.name in get_backend(b).objectives)})")
    preference_data = ds.format in PREFERENCE_FORMATS
    if o.is_preference and not preference_data:
        yield (f"objective={o.name} trains on preference data (dataset.format=preference|kto, e.g. "
               f"dataset=dalat-pairs); dataset {ds.name!r} is format {ds.format}")
    elif not o.is_preference and preference_data:
        yield (f"dataset {ds.name!r} is preference data (format {ds.format}): train it with objective=dpo|orpo|kto, "
               "or pick an SFT dataset")
    elif o.name in ("dpo", "orpo") and ds.format == "kto":
        yield (f"objective={o.name} needs pairs (chosen + rejected); dataset {ds.name!r} holds KTO's unpaired rows: "
               "use objective=kto")


def resolve_init(run: RunConfig) -> None:
    """``init.run=latest`` -> the newest finished run of ``init.recipe``; a directory -> its absolute path.
    Done once at compose time, so config.yaml records the parent that was actually used."""
    if run.init.run is None:
        return
    if run.init.run == "latest":
        from tuneforge.runs import find_runs

        recipe = run.init.recipe
        if not recipe:
            raise ConfigError("init.run=latest needs init.recipe=<the recipe whose newest run to start from>")
        found = [r for r in find_runs(run.init.root, recipe) if (r.path / "summary.json").is_file()
                 and ((r.path / "adapter").is_dir() or (r.path / "model").is_dir())]
        if not found:
            raise ConfigError(f"init.run=latest: no finished run of {recipe} under {run.init.root}/; train it "
                              f"first (tuneforge train recipe={recipe}) or give init.run=<run directory>")
        run.init.run = str(found[0].path.resolve())
    else:
        run.init.run = str(Path(run.init.run).expanduser().resolve())


def check_init(run: RunConfig) -> Iterable[str]:
    if run.init.run is None:
        return
    parent = Path(run.init.run)
    if not (parent / "config.yaml").is_file():
        yield f"init.run={run.init.run}: not a run directory (no config.yaml)"
        return
    if not ((parent / "adapter").is_dir() or (parent / "model").is_dir()):
        yield f"init.run={run.init.run}: the run has no adapter/ or model/ (unfinished or failed)"
        return
    from tuneforge.rundir import read_config

    prun = read_config(parent)
    if prun.model.name_or_path != run.model.name_or_path:
        yield (f"init.run={run.init.run} was trained on model {prun.model.name_or_path!r}, this run is on "
               f"{run.model.name_or_path!r}: pick the parent's model (model=...) or another run")
    if prun.method.quantization.bits is not None:
        yield (f"init.run={run.init.run} is a QLoRA run: merge it first (tuneforge merge run=...) and start "
               "from model.name_or_path=<its merged/> instead")
    if run.launcher.name != "local" or run.distributed.zero_stage is not None:
        yield "init.run is supported with launcher=local and distributed=none (the parent is merged in process)"
