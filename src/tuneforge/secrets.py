"""What counts as a secret, so it never reaches a file: config.yaml, plan.txt, summary.json, launch.sh, job.sbatch.

Two rules:

- a config key *named* like a credential (``hf_token``, ``api_key``, ``password``, ...) has its value redacted.
  Names are matched precisely: ``pad_token``/``eos_token`` (tokenizer special tokens) and ``max_tokens`` are
  not credentials, and config.yaml, which workers, eval, merge and chat re-read, must keep them;
- every ``launcher.env`` value is a secret unless its name is on :data:`SAFE_ENV` (or starts with one of
  :data:`SAFE_ENV_PREFIXES`). Launch scripts export secret variables *by name* from the submitting
  environment (``export HF_TOKEN``; Slurm's default ``--export=ALL`` carries it to the job), never by value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***REDACTED***"

# a credential's name: the whole key, or its last part(s) after a '_'/'-' separator. A bare ``token`` or
# ``pat`` counts only as the whole key: ``pad_token``/``eos_token`` (tokenizer special tokens) are not secrets.
_SECRET_NAME = re.compile(
    r"^(?:token|pat|secret|password)$"
    r"|(?:^|[_-])(?:api[_-]?key|secret[_-]?key|client[_-]secret|password|passwd|credentials?|private[_-]key"
    r"|(?:hf|hub|auth|access|api|bearer|refresh|session|github|gh|gitlab|wandb|openai|slack|id|personal)[_-]token"
    r"|pat)$", re.I)
_NAMES_AN_ENV_VAR = re.compile(r"_env$", re.I)  # api_key_env holds the *name* of a variable, not its value

# the secret variables of the launching environment, whose literal values are scrubbed everywhere
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY")

# launcher.env names whose values are configuration, not credentials: written to scripts by value
SAFE_ENV = frozenset({
    "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING", "CUDA_DEVICE_MAX_CONNECTIONS", "OMP_NUM_THREADS",
    "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONPATH",
    "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE",
    "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE", "HF_HUB_ENABLE_HF_TRANSFER", "TRANSFORMERS_NO_ADVISORY_WARNINGS",
    "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_DIR", "WANDB_SILENT", "AXOLOTL_DO_NOT_TRACK",
    "ACCELERATE_USE_CPU", "ACCELERATE_LOG_LEVEL", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING", "TORCH_DISTRIBUTED_DEBUG", "TORCH_CPP_LOG_LEVEL", "LOGLEVEL",
    "TUNEFORGE_PREEMPTION", "TUNEFORGE_CACHE", "TUNEFORGE_HOME", "DS_BUILD_OPS", "TMPDIR",
})
SAFE_ENV_PREFIXES = ("NCCL_", "GLOO_", "FI_", "UCX_", "TORCHINDUCTOR_")


def is_secret_key(key: str) -> bool:
    """Whether a config key's *name* says its value is a credential."""
    return bool(key) and not _NAMES_AN_ENV_VAR.search(key) and bool(_SECRET_NAME.search(key))


def is_safe_env(name: str) -> bool:
    return name in SAFE_ENV or name.startswith(SAFE_ENV_PREFIXES)


def split_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(safe, secret) parts of a launcher.env mapping."""
    safe = {k: str(v) for k, v in env.items() if is_safe_env(k)}
    secret = {k: str(v) for k, v in env.items() if not is_safe_env(k)}
    return safe, secret


def secret_values(extra: Mapping[str, str] | None = None) -> list[str]:
    """Literal secrets to scrub from any text: the launching environment's, plus ``extra`` (launcher.env)."""
    values = [v for k in SECRET_ENV if (v := os.environ.get(k))]
    values += [str(v) for v in (extra or {}).values()]
    return sorted({v for v in values if len(v) >= 6}, key=len, reverse=True)


def secret_items(obj: Any) -> list[tuple[str, Any]]:
    """(dotted key, value) for every value a config mapping holds under a secret-named key or in a
    launcher.env (not safe-listed). A list's items keep their list's key."""
    found: list[tuple[str, Any]] = []

    def walk(o: Any, path: tuple[str, ...]) -> None:
        if isinstance(o, Mapping):
            for k, v in o.items():
                walk(v, (*path, str(k)))
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v, path)
        elif o is not None and not isinstance(o, bool) and path:
            in_env = len(path) >= 2 and path[-2] == "env" and not is_safe_env(path[-1])
            if in_env or is_secret_key(path[-1]):
                found.append((".".join(path), o))

    walk(obj, ())
    return found


def secrets_in(obj: Any) -> list[str]:
    """The literal secret values in a config mapping (see :func:`secret_items`), longest first: scrubbed from
    every text written for the run (plan files, command lines, recipe copies)."""
    return sorted({str(v) for _, v in secret_items(obj) if len(str(v)) >= 6}, key=len, reverse=True)


def scrub(text: str, values: Iterable[str]) -> str:
    for v in values:
        text = text.replace(v, REDACTED)
    return text


def redact_override(arg: str) -> str:
    """A command-line override with its value hidden when its key names a credential or a launcher.env
    variable not on the safe list: ``+launcher.env.HF_TOKEN=hf_x`` -> ``+launcher.env.HF_TOKEN=***REDACTED***``."""
    key, sep, value = arg.partition("=")
    if not sep or not value:
        return arg
    parts = key.lstrip("+~").split(".")
    in_env = len(parts) >= 2 and parts[-2] == "env" and not is_safe_env(parts[-1])
    return f"{key}={REDACTED}" if in_env or is_secret_key(parts[-1]) else arg


def redact_recipe_text(text: str) -> str:
    """A recipe file's text with the values it holds under secret-named keys (or in a launcher.env) replaced,
    so the private copy tuneforge composes from never holds a credential; the user keeps theirs in their file."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not YAML: the composer reports the error against the user's file, nothing is composed
    for v in secrets_in(data):  # a plain word: valid YAML unquoted or inside quotes (the override restores it)
        text = text.replace(v, "REDACTED-by-tuneforge")
    return text


def export_by_name(name: str) -> str:
    """The shell line that passes a secret variable on from the environment, failing clearly when it is unset."""
    return (f': "${{{name}:?{name} is not set in this environment: tuneforge passes secrets by name, '
            f'set it where the job starts}}"\nexport {name}')


# TrainingArguments fields that hold a credential, and the variable the library reads it from when unset
ARG_SECRET_ENV = {"hub_token": "HF_TOKEN"}


def keep_secrets_out_of_args(args: Any) -> Any:
    """Move every credential out of a TrainingArguments object before the Trainer pickles it into each
    checkpoint (``training_args.bin``): ``hub_token`` goes to ``HF_TOKEN`` in this process's environment
    (huggingface_hub reads it there); any other secret-named field is cleared."""
    import dataclasses

    for f in dataclasses.fields(args):
        value = getattr(args, f.name, None)
        if not isinstance(value, str) or not value or not is_secret_key(f.name):
            continue
        var = ARG_SECRET_ENV.get(f.name)
        if var and value != REDACTED:
            os.environ[var] = value
        setattr(args, f.name, None)
    return args
