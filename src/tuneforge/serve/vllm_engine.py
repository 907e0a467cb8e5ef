"""``tuneforge serve serve.engine=vllm``: the run served by vLLM's own OpenAI-compatible server (``vllm serve``).

Which server runs (``serve.engine``):

- ``transformers``: transformers' server, in-process (app.py). CPU or one GPU; requests one at a time.
- ``vllm``: ``vllm serve`` as a child process. Needs a CUDA GPU and ``pip install vllm``; continuous batching,
  paged KV cache. A LoRA run is served *directly*: the base model with ``--enable-lora --lora-modules
  <model id>=<run>/adapter``, so clients call the same model id and no merged copy is written. A run that
  starts from another run (``init.run``: its base is that run's merged weights) or a full fine-tune serves
  the complete weights instead (merged first when needed, as for transformers).
- ``auto`` (default): vllm when a CUDA GPU is visible and vllm is installed, else transformers.

Both get the run's tokenizer (turn tokens special, the run's chat template) and its decoding as
``generation_config.json``, so a request that sets nothing decodes as the run was evaluated. The API key is
passed to vLLM through its environment variable (``VLLM_API_KEY``), never on the command line. One difference:
transformers' server adds the run's system prompt to a request that has none; vLLM does not.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError
from tuneforge.schema.serve import API_KEY_ENV, ServeConfig

ENGINES = ("auto", "transformers", "vllm")


def vllm_missing() -> str | None:
    """Why vLLM cannot serve here (None when it can)."""
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is visible"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm, on a CUDA machine)"
    return None


def resolve_engine(cfg: ServeConfig) -> tuple[str, str]:
    """(the engine that serves, why): ``auto`` -> vllm where it can run, else transformers. A named vllm that
    cannot run here keeps its name; the reason says so (the plan shows it, ``choose_engine`` refuses it)."""
    missing = vllm_missing() if cfg.engine != "transformers" else None
    if cfg.engine == "auto":
        if cfg.device != "cpu" and missing is None:
            return "vllm", "auto: a CUDA GPU and vllm are present"
        return "transformers", f"auto: {missing or 'serve.device=cpu'}"
    return cfg.engine, (f"NOT AVAILABLE HERE: {missing}" if missing else cfg.engine)


def choose_engine(cfg: ServeConfig) -> str:
    """The engine that serves; a vllm that cannot run here is refused with the way out."""
    engine, why = resolve_engine(cfg)
    if why.startswith("NOT AVAILABLE HERE"):
        raise ConfigError(f"serve.engine=vllm: {vllm_missing()}; serve.engine=transformers (or auto) serves on "
                          "this machine")
    return engine


def lora_direct(art: Any) -> bool:
    """An adapter on a base vLLM can load itself (not on another run's merged weights)."""
    return bool(art.uses_adapter and art.run.init.run is None)


def vllm_command(art: Any, cfg: ServeConfig, *, model: str, config_dir: Path, model_id: str) -> list[str]:
    """``vllm serve`` for the run: ``model`` is the base (LoRA served directly) or the complete weights;
    ``config_dir`` holds the run's tokenizer and generation_config.json."""
    argv = [_vllm_exe(), "serve", model,
            "--host", cfg.host, "--port", str(cfg.port),
            "--tokenizer", str(config_dir), "--generation-config", str(config_dir)]
    if lora_direct(art):
        argv += ["--served-model-name", f"{model_id}-base", "--enable-lora",
                 "--lora-modules", f"{model_id}={art.weights}", "--max-lora-rank", str(_lora_rank(art))]
    else:
        argv += ["--served-model-name", model_id]
    return argv


def _vllm_exe() -> str:
    """vLLM's console script (``vllm``), next to this interpreter when installed in its environment."""
    import shutil

    beside = Path(sys.executable).with_name("vllm")
    return str(beside) if beside.is_file() else (shutil.which("vllm") or "vllm")


def _lora_rank(art: Any) -> int:
    """vLLM's --max-lora-rank must be one of its supported sizes and at least the adapter's rank."""
    r = int(getattr(art.run.method, "r", 0) or 8)
    return next(size for size in (8, 16, 32, 64, 128, 256, 320, 512) if size >= r) if r <= 512 else r


def prepare(art: Any, decoding: Any, cfg: ServeConfig) -> tuple[list[str], str]:
    """The directories vLLM reads and its command line; returns (argv, the model id clients send)."""
    import shutil

    from tuneforge.evaluation.artifacts import load_run_tokenizer
    from tuneforge.evaluation.runner import generation_config
    from tuneforge.models import resolve_model_path
    from tuneforge.serve.model_dir import prepare_served_model, served_model_id

    model_id = served_model_id(art.run_dir)
    if lora_direct(art):
        model, config_dir = resolve_model_path(art.run.model), vllm_config_dir(art)
        shutil.rmtree(config_dir, ignore_errors=True)
        config_dir.mkdir(parents=True)
        tokenizer = load_run_tokenizer(art)
        tokenizer.save_pretrained(str(config_dir))
        generation_config(tokenizer, decoding).save_pretrained(str(config_dir))
    else:
        served = prepare_served_model(art, decoding, merge=cfg.merge)
        config_dir, model = served.path, str(served.path)
    return vllm_command(art, cfg, model=model, config_dir=config_dir, model_id=model_id), model_id


def vllm_config_dir(art: Any) -> Path:
    """Where vLLM reads the run's tokenizer and generation_config.json: a LoRA run's own directory (no weights:
    vLLM loads the base and the adapter), else the served directory that holds the complete weights too."""
    from tuneforge.serve.model_dir import SERVE_DIR, served_model_id

    model_id = served_model_id(art.run_dir)
    return art.run_dir / SERVE_DIR / (f"{model_id}-vllm" if lora_direct(art) else model_id)


def serve_vllm(art: Any, decoding: Any, cfg: ServeConfig, label: str) -> int:
    """Run ``vllm serve`` in the foreground; SIGINT/SIGTERM are passed on and its exit code returned."""
    argv, model_id = prepare(art, decoding, cfg)
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    if os.environ.get(API_KEY_ENV):
        env["VLLM_API_KEY"] = os.environ[API_KEY_ENV]  # vLLM's own variable: the key never reaches argv or disk
    print(f"tuneforge serve: {label} as model '{model_id}' at http://{cfg.host}:{cfg.port}/v1 with vLLM"
          f"{' (LoRA served directly)' if lora_direct(art) else ''}\n  {' '.join(argv)}", flush=True)
    child = subprocess.Popen(argv, env=env)
    previous = {s: signal.signal(s, lambda sig, _f: child.send_signal(sig)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if rc in (0, -signal.SIGINT, -signal.SIGTERM) else rc
