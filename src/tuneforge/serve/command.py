"""``tuneforge serve run=<dir> [serve.port=8000] [serve.host=127.0.0.1] [eval.<key>=...] [--plan]``
``tuneforge serve run=<dir> serve.ab.run_b=<dir>|serve.ab.base=true [serve.ab.share=0.5 serve.ab.seed=0]``: A/B

Serves a finished run over the OpenAI chat-completions API with transformers' own server (``transformers
serve``: FastAPI + uvicorn), pinned to the run's model. Binds 127.0.0.1 unless told otherwise. When
``TUNEFORGE_SERVE_API_KEY`` is set, every ``/v1`` request must send it as a bearer token; the key is read from
the environment only and never printed or written. SIGINT / SIGTERM stop it cleanly (in-flight requests
finish, the model is unloaded, exit code 0). ``--plan`` prints the server, the command and the memory it
needs, and starts nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.schema.serve import API_KEY_ENV, DEVICES, LOG_LEVELS, ABConfig, ServeConfig

log = logging.getLogger("tuneforge.serve")

SERVE_KEYS = {f"serve.{k}": "" for k in ServeConfig.__dataclass_fields__ if k != "ab"} | {
    f"serve.ab.{k}": "" for k in ABConfig.__dataclass_fields__}


def serve_config(options: dict[str, str]) -> ServeConfig:
    """``serve.*`` options, typed and checked by the schema (a wrong type or choice fails with the key)."""
    from omegaconf import OmegaConf

    dotlist = [f"{k[len('serve.'):]}={v}" for k, v in options.items() if k.startswith("serve.")]
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ServeConfig), OmegaConf.from_dotlist(dotlist)))
    except Exception as exc:  # noqa: BLE001 - OmegaConf's validation errors have several types
        raise ConfigError(f"invalid serve option ({', '.join('serve.' + d for d in dotlist)}): "
                          f"{str(exc).strip().splitlines()[0]}") from None
    if not 0 < cfg.port < 65536:  # type: ignore[union-attr]
        raise ConfigError(f"serve.port={cfg.port} is not a TCP port (1-65535)")  # type: ignore[union-attr]
    from tuneforge.serve.vllm_engine import ENGINES

    for key, value, valid in (("device", cfg.device, DEVICES), ("log_level", cfg.log_level, LOG_LEVELS),  # type: ignore[union-attr]
                              ("engine", cfg.engine, ENGINES)):  # type: ignore[union-attr]
        if value not in valid:
            raise ConfigError(f"serve.{key}={value!r} is not one of: {', '.join(valid)}")
    ab = cfg.ab  # type: ignore[union-attr]
    if not 0.0 <= ab.share <= 1.0:
        raise ConfigError(f"serve.ab.share={ab.share} is not a share of requests (0..1)")
    if ab.run_b and ab.base:
        raise ConfigError("serve.ab.run_b and serve.ab.base=true both name arm B: give one")
    if (ab.run_b or ab.base) and cfg.engine == "vllm":  # type: ignore[union-attr]
        raise ConfigError("serve.ab.* splits requests inside transformers' server: use serve.engine=transformers "
                          "(or auto) for an A/B")
    return cfg  # type: ignore[return-value]


def run_label(run_dir: Path) -> str:
    return f"{run_dir.parent.name}/{run_dir.name}"


def cmd_serve(args: list[str]) -> int:
    from tuneforge.evaluation.artifacts import open_run
    from tuneforge.evaluation.run_args import eval_config_with, parse_run_args
    from tuneforge.serve.model_dir import refuse_hosted
    from tuneforge.serve.plan import serve_plan

    plan_only = "--plan" in args
    parsed = parse_run_args("serve", [a for a in args if a != "--plan"], SERVE_KEYS)
    cfg = serve_config(parsed.options)
    refuse_hosted(parsed.run_dir, "serve")
    art = open_run(parsed.run_dir, parsed.options.get("base"))
    decoding = eval_config_with(art.run.eval, parsed.eval_overrides)
    if plan_only:
        print(serve_plan(art, decoding, cfg))
        if cfg.ab.run_b or cfg.ab.base:
            print(f"  A/B          arm B {cfg.ab.run_b or 'the base model'} answers {cfg.ab.share:.0%} of requests "
                  f"(seed {cfg.ab.seed}; a second model in memory); log {art.run_dir / 'ab' / 'log.jsonl'}")
        return 0
    return serve_run(art, decoding, cfg)


def ab_arms(art: object, decoding: object, cfg: ServeConfig, root: Path) -> object:
    """Arm B (another run, or the run's base) ready to serve from ``root``; None without ``serve.ab.*``."""
    from tuneforge.serve.app import ABArms
    from tuneforge.serve.model_dir import link_into, prepare_base_served_model, prepare_served_model

    ab = cfg.ab
    if not ab.run_b and not ab.base:
        return None
    if ab.base:
        served_b = prepare_base_served_model(art, decoding)  # type: ignore[arg-type]
    else:
        from tuneforge.evaluation.artifacts import open_run
        from tuneforge.runs import resolve_run
        from tuneforge.serve.model_dir import refuse_hosted

        run_b = resolve_run(ab.run_b)
        refuse_hosted(run_b, "serve.ab.run_b")
        if run_b.resolve() == art.run_dir.resolve():  # type: ignore[attr-defined]
            raise ConfigError(f"serve.ab.run_b={ab.run_b} is the served run itself; name another run")
        art_b = open_run(run_b)
        served_b = prepare_served_model(art_b, decoding, merge=cfg.merge)  # type: ignore[arg-type]  # same decoding
    return ABArms(link_into(served_b, root), ab.share, ab.seed, ab.base)


def serve_run(art: object, decoding: object, cfg: ServeConfig) -> int:
    """Prepare the served model, start uvicorn in the foreground, return when it has stopped."""
    import uvicorn

    from tuneforge.serve.app import build_app
    from tuneforge.serve.model_dir import prepare_served_model
    from tuneforge.serve.vllm_engine import choose_engine, serve_vllm

    label = run_label(art.run_dir)  # type: ignore[attr-defined]
    if not (cfg.ab.run_b or cfg.ab.base) and choose_engine(cfg) == "vllm":
        return serve_vllm(art, decoding, cfg, label)
    served = prepare_served_model(art, decoding, merge=cfg.merge)  # type: ignore[arg-type]
    ab = ab_arms(art, decoding, cfg, served.root)
    api_key = os.environ.get(API_KEY_ENV) or None
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        log.warning("serve[%s] binds %s, reachable from other machines, without an API key (set %s)",
                    label, cfg.host, API_KEY_ENV)
    log.info("serve[%s] loading %s (%s) with transformers' server", label, served.model_id, served.source)
    os.chdir(served.root)  # the model id is a directory name relative to here: clients never see a path
    app = build_app(served, device=cfg.device, api_key=api_key, run_label=label, ab=ab)
    url = f"http://{cfg.host}:{cfg.port}/v1"
    print(f"tuneforge serve: {label} as model '{served.model_id}' at {url}\n"
          f"  health {url[:-3]}/health; API key: {'required (' + API_KEY_ENV + ')' if api_key else 'none'}; "
          f"decoding {'sampling' if served.decoding.do_sample else 'greedy'}, max_tokens "
          f"{served.decoding.max_new_tokens}; Ctrl-C or SIGTERM stops it", flush=True)
    if ab is not None:
        print(f"  A/B: arm B '{ab.served_b.model_id}' answers {ab.share:.0%} of requests (seed {ab.seed}); log "
              f"{art.run_dir / 'ab' / 'log.jsonl'}; ratings: POST {url}/feedback", flush=True)  # type: ignore[attr-defined]
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level,
                                           access_log=False, timeout_graceful_shutdown=30))
    # uvicorn handles SIGINT/SIGTERM (stop accepting, finish in-flight requests, unload the model) and then
    # re-raises the signal to the handler it found: this one records it, so the process ends with exit code 0
    signals: list[int] = []
    previous = {s: signal.signal(s, lambda sig, _frame: signals.append(sig)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not server.started:
        raise ConfigError(f"serve.port={cfg.port}: the server could not start on {cfg.host} (port in use?)")
    why = f" ({signal.Signals(signals[0]).name})" if signals else ""
    log.info("serve[%s] stopped%s", label, why)
    print(f"tuneforge serve: {label} stopped{why}", file=sys.stderr, flush=True)
    return 0
