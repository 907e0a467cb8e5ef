"""Where a run executes (launcher) and how its processes share the model (distributed).

Every launcher spells its resources in its own words (Slurm's ``nodes``/``gpus_per_node``, accelerate's
``num_nodes``/``gpus_per_node``/``cpu``, Ray's ``num_workers``/``use_gpu``); :meth:`LauncherConfig.resources`
turns them into one :class:`Resources` record, from which the world size, the device and the precision rule
are derived once (``tuneforge.distributed``), never by probing field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from omegaconf import MISSING

# cpu / gpu: what the launcher's settings say; here: the local machine decides (a GPU device node or not)
DeviceKind = Literal["cpu", "gpu", "here"]


@dataclass(frozen=True)
class Resources:
    """What a launcher asks for: the same record for every launcher."""

    nodes: int = 1
    processes_per_node: int = 1
    device: DeviceKind = "here"
    port: Optional[int] = None  # the rendezvous port of a multi-process run

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node

    def precision_problem(self, mixed_precision: str, spelled: str) -> Optional[str]:
        """bf16/fp16 autocast needs a GPU: the one rule, for every launcher (``spelled``: its CPU setting)."""
        if self.device == "cpu" and mixed_precision in ("bf16", "fp16"):
            return (f"hparams.mixed_precision={mixed_precision} needs a GPU, but {spelled} (CPU processes); use "
                    "hparams.mixed_precision=auto or no")
        return None


@dataclass
class LauncherConfig:
    name: str = MISSING  # a key of tuneforge.launch.registry.LAUNCHERS
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the launched processes
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    # memory of one accelerator (GiB) the run may use; `plan` warns when its per-GPU estimate exceeds it
    gpu_memory_gb: Optional[float] = None

    def resources(self) -> Resources:
        return Resources()


@dataclass
class LocalLauncherConfig(LauncherConfig):
    """One process on this machine."""

    name: str = "local"


@dataclass
class AccelerateLauncherConfig(LauncherConfig):
    """``accelerate launch`` on each node: one process per GPU, nodes joined by a static rendezvous.

    The plan writes ``accelerate.yaml`` (what every node shares) and ``launch.sh`` (one node's command:
    ``launch.sh <node_rank>``) into the run directory. Precision is not a field here: the Trainer sets it
    from ``hparams.mixed_precision`` (and DeepSpeed's JSON says "auto"), so accelerate's YAML always says
    'no' and can never disagree with it.
    """

    name: str = "accelerate"
    gpus_per_node: int = 1  # processes per node (one per GPU; with cpu=true: CPU processes)
    num_nodes: int = 1
    node_rank: int = 0  # which node this `train` starts (0 = the main node); 0..num_nodes-1
    main_process_ip: Optional[str] = None  # address of node 0, reachable from every node (num_nodes > 1)
    main_process_port: int = 29500
    rdzv_backend: str = "static"  # static | c10d | etcd | etcd-v2 (torchrun's rendezvous)
    same_network: bool = True  # nodes share a network: master_addr/port instead of a rendezvous endpoint
    max_restarts: int = 0  # torchrun restarts of a failed worker group
    monitor_interval: float = 5.0  # seconds between torchrun's checks of its workers
    # CPU processes with the gloo backend (ACCELERATE_USE_CPU=true): real data parallel without a GPU
    cpu: bool = False
    dynamo_backend: str = "no"

    def resources(self) -> Resources:
        return Resources(nodes=self.num_nodes, processes_per_node=self.gpus_per_node,
                         device="cpu" if self.cpu else "gpu", port=self.main_process_port)


@dataclass
class SlurmLauncherConfig(LauncherConfig):
    """One sbatch job: ``srun`` starts one task per node, each runs ``accelerate launch`` for its GPUs.

    Unknown partition/account/qos values go to Slurm as they are (it knows its own cluster); anything
    without a field here goes through ``additional_parameters`` (``--key=value`` sbatch lines).
    """

    name: str = "slurm"
    nodes: int = 1
    gpus_per_node: int = 0  # 0: a CPU job (ACCELERATE_USE_CPU=true, gloo)
    processes_per_node: Optional[int] = None  # default: gpus_per_node, or 1 on CPU
    cpus_per_task: Optional[int] = None  # one task per node, so: CPUs per node
    mem: Optional[str] = None  # per node, Slurm syntax: 64G, 500000M, 0 (= all of it)
    time: str = "01:00:00"  # [D-]HH:MM:SS | MM | MM:SS | D-HH | D-HH:MM
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    exclusive: bool = False
    job_name: Optional[str] = None  # default: tuneforge-<recipe name>
    # shell lines run on the first node before srun (module load ..., source .../activate)
    env_setup: list[str] = field(default_factory=list)
    python: Optional[str] = None  # interpreter on the nodes; default: the one that submits
    master_port: int = 29500
    # exported unless already set in the job's environment; override per key: launcher.nccl_env.NCCL_DEBUG=INFO
    nccl_env: dict[str, str] = field(default_factory=lambda: {
        "NCCL_DEBUG": "WARN",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
        "NCCL_IB_TIMEOUT": "22",
    })
    # preemption: Slurm sends SIGUSR1 this many seconds before the time limit; the trainer saves a
    # checkpoint and the job requeues itself. 0 disables the signal.
    signal_seconds: int = 300
    requeue: bool = True
    wait: bool = False  # block until the job ends (tests, scripts); default: submit and return

    def resources(self) -> Resources:
        return Resources(nodes=self.nodes, processes_per_node=self.processes_per_node or self.gpus_per_node or 1,
                         device="gpu" if self.gpus_per_node else "cpu", port=self.master_port)


@dataclass
class RayLauncherConfig(LauncherConfig):
    """One Ray job per run (``tuneforge.launch.ray``): Ray Train's TorchTrainer starts ``num_workers`` workers,
    joined by Ray's torch process group (gloo on CPU, nccl with ``use_gpu``), each one training process.

    ``env`` becomes the job's runtime_env: only configuration variables (tuneforge.secrets.SAFE_ENV);
    secrets are refused, set them where the cluster's ``ray start`` runs. The run directory must be on a
    filesystem the cluster's nodes share with this host.
    """

    name: str = "ray"
    # the cluster's dashboard (Ray's job API): http://<head>:8265; null = RAY_ADDRESS, else the cluster
    # started on this machine by `ray start --head`
    address: Optional[str] = None
    num_workers: int = 2  # Ray Train workers = training processes (world size)
    cpus_per_worker: float = 1
    use_gpu: bool = False  # one GPU per worker (nccl); false: CPU workers over gloo
    python: Optional[str] = None  # interpreter of the job's entrypoint on the cluster; default: the one that submits
    wait: bool = False  # block until the job ends (tests, scripts); default: submit and return

    def resources(self) -> Resources:
        return Resources(nodes=1, processes_per_node=self.num_workers, device="gpu" if self.use_gpu else "cpu")


@dataclass
class DistributedConfig:
    """How the model is sharded across processes (DeepSpeed ZeRO); ``none`` = plain data parallel (DDP).

    A ZeRO option becomes ``<run_dir>/ds_config.json`` in the form the transformers/accelerate integration
    expects ("auto" wherever the Trainer fills in a value), used by both backends.
    """

    name: str = MISSING  # none | zero1 | zero2 | zero3 | zero3-offload
    zero_stage: Optional[int] = None  # 0..3; null = no DeepSpeed
    offload_optimizer: bool = False  # optimizer states (and the step) on the CPU: DeepSpeed's CPU Adam
    offload_params: bool = False  # parameters on the CPU between uses (ZeRO-3 only)
    overlap_comm: bool = True
    contiguous_gradients: bool = True
    allgather_bucket_size: int = 500_000_000
    # ZeRO-3: gather the full 16-bit weights when saving, so save_pretrained writes a usable model
    gather_16bit_weights_on_model_save: bool = True
    # escape hatch: merged (recursively) into ds_config.json last, e.g. {"zero_optimization": {...}}
    additional_parameters: dict[str, Any] = field(default_factory=dict)
