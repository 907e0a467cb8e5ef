"""OpenAI's DPO fine-tuning: the file format and the job's ``method``, as the SDK's types spell them
(openai/types/fine_tuning/dpo_method_param.py, dpo_hyperparameters_param.py; job_create_params.Method).

One line of the training file::

    {"input": {"messages": [{"role": "system", ...}, {"role": "user", ...}]},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

The job: ``method={"type": "dpo", "dpo": {"hyperparameters": {"beta", "n_epochs", "batch_size",
"learning_rate_multiplier"}}}``. Shared by the backend (it writes and checks the file) and the project's
stand-in server (it refuses a job whose file or method is not this).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DPO_HYPERPARAMETERS = ("batch_size", "beta", "learning_rate_multiplier", "n_epochs")


def dpo_row(row: dict[str, Any]) -> dict[str, Any]:
    """A prepared preference row (TRL's conversational shape) -> OpenAI's DPO line."""
    return {"input": {"messages": row["prompt"]}, "preferred_output": row["chosen"],
            "non_preferred_output": row["rejected"]}


def write_dpo_file(src: Path, dest: Path) -> Path:
    with src.open(encoding="utf-8") as f, dest.open("w", encoding="utf-8") as out:
        for line in f:
            if line.strip():
                out.write(json.dumps(dpo_row(json.loads(line)), ensure_ascii=False) + "\n")
    return dest


def dpo_messages(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation a DPO line stands for (prompt + preferred answer): what tokens and answers are read from."""
    return [*obj["input"]["messages"], *obj["preferred_output"]]


def dpo_example_problems(obj: Any) -> list[tuple[str, str]]:
    """(rule, message) for one DPO line, by OpenAI's DPO format."""
    if not isinstance(obj, dict):
        return [("O020", "not a JSON object")]
    out: list[tuple[str, str]] = []
    missing = [k for k in ("input", "preferred_output", "non_preferred_output") if k not in obj]
    if missing:
        return [("O020", f"missing {', '.join(missing)} (DPO lines hold input.messages, preferred_output, "
                         "non_preferred_output)")]
    msgs = obj["input"].get("messages") if isinstance(obj["input"], dict) else None
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        out.append(("O021", "input.messages must be a non-empty list of messages"))
    elif msgs[-1].get("role") != "user":
        out.append(("O021", "input.messages must end with a user message"))
    for key in ("preferred_output", "non_preferred_output"):
        v = obj[key]
        if not (isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict) and v[0].get("role") == "assistant"
                and isinstance(v[0].get("content"), str) and v[0]["content"].strip()):
            out.append(("O022", f"{key} must be one assistant message with non-empty content"))
    if not out and obj["preferred_output"][0]["content"] == obj["non_preferred_output"][0]["content"]:
        out.append(("O023", "preferred_output and non_preferred_output are the same"))
    return out


def job_problem(method: dict[str, Any], examples: list[Any]) -> str | None:
    """What is wrong with a job's method and its training file, or None (the stand-in's check)."""
    kind = method.get("type", "supervised")
    if kind not in ("supervised", "dpo"):
        return f"method.type={kind!r} is not supported here (supervised, dpo)"
    if kind == "supervised":
        bad = next((i for i, ex in enumerate(examples, 1) if not isinstance(ex, dict) or "messages" not in ex), None)
        return None if bad is None else (f"training file line {bad}: a supervised job needs 'messages' (a DPO file "
                                         "goes with method.type=dpo)")
    hp = (method.get("dpo") or {}).get("hyperparameters") or {}
    unknown = sorted(set(hp) - set(DPO_HYPERPARAMETERS))
    if unknown:
        return f"method.dpo.hyperparameters: unknown {', '.join(unknown)} (valid: {', '.join(DPO_HYPERPARAMETERS)})"
    beta = hp.get("beta", "auto")
    if beta != "auto" and (isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta <= 2):
        return f"method.dpo.hyperparameters.beta={beta!r} must be \"auto\" or a number in (0, 2]"
    for i, ex in enumerate(examples, 1):
        problems = dpo_example_problems(ex)
        if problems:
            return f"training file line {i}: {problems[0][0]} {problems[0][1]}"
    return None
