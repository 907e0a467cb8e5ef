"""``tuneforge serve --plan``: the server that would start (transformers' or vLLM, and why), its command, the
memory it needs. Nothing is loaded, merged or written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.evaluation.artifacts import RunArtifacts
from tuneforge.schema.evaluation import EvalConfig
from tuneforge.serve.model_dir import SERVE_DIR, memory_estimate, served_model_id
from tuneforge.serve.vllm_engine import lora_direct, resolve_engine, vllm_command, vllm_config_dir


def serve_plan(art: RunArtifacts, decoding: EvalConfig, cfg: Any) -> str:
    """The server that would start, with what, and the memory it needs (nothing is loaded or written)."""
    from tuneforge.models import local_model_dir

    host, port, device = cfg.host, cfg.port, cfg.device
    engine, why = resolve_engine(cfg)

    has_merged = (art.merged / "config.json").is_file()
    source = art.weights if not art.uses_adapter else art.merged
    estimate_dir = source if (source / "config.json").is_file() else local_model_dir(art.run.model, build=False)
    lines = ["tuneforge serve (plan: nothing started)",
             f"  run          {art.run_dir}",
             f"  model id     {served_model_id(art.run_dir)}",
             f"  weights      {source}" + ("" if not art.uses_adapter or has_merged else
                                           "  (built first: tuneforge merge, parity-checked)"),
             f"  served dir   {art.run_dir / SERVE_DIR / served_model_id(art.run_dir)}",
             (f"  server       transformers serve (in-process: transformers.cli.serving), device={device}  [{why}]"
              if engine == "transformers" else
              f"  server       vLLM (`vllm serve`, CUDA)"
              f"{'; the LoRA adapter served directly' if lora_direct(art) else ''}  [{why}]"),
             f"  url          http://{host}:{port}/v1  (health: /health, models: /v1/models)",
             f"  decoding     {'sampling' if decoding.do_sample else 'greedy'}, max_tokens {decoding.max_new_tokens}"
             f", repetition_penalty {decoding.repetition_penalty} (requests may override)",
             f"  command      tuneforge serve run={art.run_dir} serve.host={host} serve.port={port}"
             + ("" if cfg.engine == "auto" else f" serve.engine={cfg.engine}")]
    if engine == "vllm":
        base = local_model_dir(art.run.model, build=False) or art.run.model.name_or_path  # named, not built
        config_dir = vllm_config_dir(art)
        argv = vllm_command(art, cfg, model=str(base) if lora_direct(art) else str(config_dir),
                            config_dir=config_dir, model_id=served_model_id(art.run_dir))
        lines.append("  runs         " + " ".join(argv))
    if estimate_dir and (Path(estimate_dir) / "config.json").is_file():
        m = memory_estimate(Path(estimate_dir), decoding, art.run.hparams.seq_len)
        gib = 1024 ** 3
        lines.append(f"  memory       ~{m['total_bytes'] / gib:.2f} GiB = weights {m['weights_bytes'] / gib:.2f} GiB "
                     f"({m['dtype']}) + KV cache {m['kv_cache_bytes'] / gib:.3f} GiB per request of "
                     f"{m['tokens_per_request']} tokens (requests run one at a time; plus the Python runtime, "
                     "~0.5 GiB)")
    else:
        lines.append("  memory       unknown until the base model is in the cache")
    return "\n".join(lines)
