"""The ``@hydra.main`` entry for multirun sweeps: Hydra's sweepers (basic grid, Optuna) and launchers
(basic in-process, submitit_slurm job arrays) call :func:`trial` once per trial.

Single runs do not come through here (``tuneforge train`` composes with the compose API). Sweeps are
started by ``tuneforge sweep`` (:mod:`tuneforge.sweep.command`), which preflights the swept keys, fixes the sweep
directory and writes the results table after Hydra returns. Running this module directly also works:

    python -m tuneforge.sweep.hydra_app --multirun +sweep=grid recipe=lora-tiny 'optim.lr=1e-3,1e-2'
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tuneforge.paths import conf_dir
from tuneforge.schema.store import register_configs

register_configs()  # the schema must be in the ConfigStore before Hydra composes conf/


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def trial(cfg: DictConfig) -> float:
    """One trial: train in the trial's directory; the objective is the final eval loss (NaN if it failed)."""
    from tuneforge.sweep.trial import run_trial

    return run_trial(cfg)


if __name__ == "__main__":
    trial()
