"""Registers the schema in Hydra's ConfigStore.

Each group option YAML opens with ``defaults: [<schema name>, _self_]`` naming one of the entries below,
so the option is typed by its dataclass. Adding a variant with new fields = a dataclass + one line here.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from tuneforge.schema import backend as backend_cfg
from tuneforge.schema import launch as launch_cfg
from tuneforge.schema import run as schema
from tuneforge.schema.dataset import DatasetConfig
from tuneforge.schema.gpu import GpuConfig
from tuneforge.schema.objective import ObjectiveConfig
from tuneforge.schema.tracking import TrackingConfig

# (group, schema name, dataclass)
SCHEMAS: list[tuple[str | None, str, type]] = [
    (None, "base_config", schema.RunConfig),
    ("method", "base_method", schema.MethodConfig),
    ("model", "base_model", schema.ModelConfig),
    ("dataset", "base_dataset", DatasetConfig),
    ("optim", "base_optim", schema.OptimConfig),
    ("hparams", "base_hparams", schema.HParamsConfig),
    ("backend", "base_native", backend_cfg.NativeBackendConfig),
    ("backend", "base_axolotl", backend_cfg.AxolotlBackendConfig),
    ("backend", "base_openai", backend_cfg.OpenAIBackendConfig),
    ("backend", "base_sentence_transformers", backend_cfg.SentenceTransformersBackendConfig),
    ("launcher", "base_local", launch_cfg.LocalLauncherConfig),
    ("launcher", "base_accelerate", launch_cfg.AccelerateLauncherConfig),
    ("launcher", "base_slurm", launch_cfg.SlurmLauncherConfig),
    ("launcher", "base_ray", launch_cfg.RayLauncherConfig),
    ("distributed", "base_distributed", launch_cfg.DistributedConfig),
    ("tracking", "base_tracking", TrackingConfig),
    ("gpu", "base_gpu", GpuConfig),
    ("objective", "base_objective", ObjectiveConfig),
]

_registered = False


def register_configs() -> None:
    global _registered
    if _registered:
        return
    cs = ConfigStore.instance()
    for group, name, node in SCHEMAS:
        cs.store(group=group, name=name, node=node)
    _registered = True
