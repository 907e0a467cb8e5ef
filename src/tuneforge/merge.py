"""``tuneforge merge run=<run_dir>``: fold a LoRA adapter into its base -> ``<run_dir>/merged/`` (HF format).

The merged model is saved with ``save_pretrained`` (safetensors) plus the run's tokenizer (with its chat
template), then loaded back from disk and checked against base + adapter: the logits on a few test-split
conversations must agree within a tolerance set by the dtype (``PARITY_ATOL``); the numbers go to
``merged/parity.json``. Nothing is published unless the check passes: the model is built in a temporary
directory and renamed to ``merged/`` at the end.

QLoRA: the adapter was trained against de-quantized 4/8-bit weights, so it is merged into the base loaded
with the same quantization and de-quantized to the base dtype (``model.dtype``), not into the original
full-precision weights (which differ from what the adapter saw by the quantization error).

Refused with a :class:`~tuneforge.errors.RunArtifactError`: a full fine-tune (nothing to merge), a missing or
corrupted adapter, an adapter trained on another base.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tuneforge.errors import RunArtifactError
from tuneforge.evaluation.artifacts import RunArtifacts

log = logging.getLogger(__name__)

# max |logit(merged) - logit(base + adapter)|: merging rounds W + BA once to the stored dtype, while the
# unmerged path adds the LoRA term in the activations; fp32 leaves ~1e-6, half precision far more
PARITY_ATOL = {"float32": 1e-3, "float16": 0.1, "bfloat16": 0.5}
PARITY_PROMPTS = 4


def parity_batch(art: RunArtifacts, tokenizer: Any, n: int) -> tuple[Any, Any]:
    """input_ids and attention_mask of the first ``n`` test conversations (full, with their answers)."""
    import torch

    from tuneforge.evaluation.runner import load_test_examples

    examples = load_test_examples(art.run, n)
    rows = [tokenizer.apply_chat_template(ex.messages, tokenize=True, return_dict=True)["input_ids"]
            [: art.run.hparams.seq_len] for ex in examples]
    width = max(len(r) for r in rows)
    ids = torch.tensor([list(r) + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def logits_of(model: Any, ids: Any, mask: Any) -> Any:
    import torch

    dev = next(model.parameters()).device
    with torch.no_grad():
        return model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float().cpu()


def compare_logits(reference: Any, merged: Any, mask: Any) -> dict[str, float]:
    keep = mask.bool()
    a, b = reference[keep], merged[keep]
    diff = (a - b).abs()
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_abs_logit": float(a.abs().max()),
        "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
        "n_tokens": int(keep.sum()),
    }


def _publish(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp``; a reader sees the old or the new merged/, never a partial one."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def merge_run(run_dir: Path | str, *, atol: float | None = None, n_prompts: int = PARITY_PROMPTS,
              base: str | None = None, quiet: bool = False) -> dict[str, Any]:
    """Merge ``run_dir``'s adapter into its base, write ``merged/`` and ``merged/parity.json``."""
    import gc

    from tuneforge.evaluation.artifacts import (
        attach_adapter,
        check_adapter_base,
        load_base,
        load_full_model,
        load_run_tokenizer,
        open_run,
    )
    from tuneforge.models import torch_dtype
    from tuneforge.rundir import atomic_write_json

    t0 = time.perf_counter()
    art = open_run(run_dir, base)
    if not art.uses_adapter:
        raise RunArtifactError(
            f"run={art.run_dir} is a full fine-tune (method={art.run.method.name}): its model/ is already a "
            "complete model and there is no adapter to merge; use model/ directly"
        )
    check_adapter_base(art)  # before loading any weights
    dtype = str(torch_dtype(art.run)).removeprefix("torch.")
    tol = PARITY_ATOL.get(dtype, 0.5) if atol is None else atol
    q = art.run.method.quantization
    note = (f"QLoRA: merged into the base de-quantized from {q.bits}-bit"
            f"{' ' + q.quant_type if q.bits == 4 else ''} to {dtype} (the weights the adapter was trained "
            "against), not into the original full-precision weights") if art.is_qlora else None
    tokenizer = load_run_tokenizer(art)
    ids, mask = parity_batch(art, tokenizer, n_prompts)

    model = attach_adapter(art, load_base(art, dequantized=True))
    reference = logits_of(model, ids, mask)
    merged = model.merge_and_unload()
    del model
    tmp = art.run_dir / f".merged.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        del merged
        gc.collect()
        # the parity check runs on what was written, so it covers serialization as well as the merge
        parity = compare_logits(reference, logits_of(load_full_model(tmp, art.run), ids, mask), mask)
        parity.update(atol=tol, dtype=dtype, n_prompts=int(ids.shape[0]),
                      passed=parity["max_abs_diff"] <= tol)
        info = {
            "run_dir": str(art.run_dir),
            "method": art.run.method.name,
            "base_model": art.run.model.name_or_path,
            "adapter": str(art.weights),
            "dtype": dtype,
            "dequantized_base": art.is_qlora,
            "note": note,
            "parity": parity,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        atomic_write_json(tmp / "parity.json", info)
        if not parity["passed"]:
            raise RunArtifactError(
                f"merge parity check failed for {art.run_dir}: max |logit(merged) - logit(base+adapter)| = "
                f"{parity['max_abs_diff']:.3g} > tolerance {tol:g} ({dtype}); merged/ was not written"
            )
        _publish(tmp, art.merged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["merged"] = str(art.merged)
    if not quiet:
        print(format_merge(info))
    return info


def format_merge(info: dict[str, Any]) -> str:
    p = info["parity"]
    lines = [
        "",
        f"tuneforge merge: {info['merged']}",
        (f"  merged      {info['adapter']} into {info['base_model']} ({info['dtype']});"
         " safetensors + tokenizer"),
    ]
    if info["note"]:
        lines.append(f"  note        {info['note']}")
    lines.append(
        f"  parity      max |Δlogit| {p['max_abs_diff']:.3g} (mean {p['mean_abs_diff']:.2g}) over "
        f"{p['n_tokens']} tokens of {p['n_prompts']} test prompts; tolerance {p['atol']:g}: "
        f"{'OK' if p['passed'] else 'FAILED'}; top-1 agreement {p['top1_agreement'] * 100:.1f}%")
    lines.append(f"  details     {info['merged']}/parity.json")
    return "\n".join(lines)


def cmd_merge(args: list[str]) -> int:
    """tuneforge merge run=<run_dir> [atol=<max abs logit difference>] [base=<hub id or dir>]"""
    from tuneforge.errors import ConfigError
    from tuneforge.evaluation.run_args import parse_run_args

    parsed = parse_run_args("merge", args, {"atol": "parity tolerance (max abs logit difference)"})
    from tuneforge.evaluation.hosted import hosted_run

    if hosted_run(parsed.run_dir):
        raise RunArtifactError(f"merge does not apply to {parsed.run_dir}: it was fine-tuned by OpenAI, whose weights "
                               "never leave OpenAI's servers and have no adapter to merge; use the fine-tuned model "
                               "id in summary.json through the API (tuneforge chat / eval run=...)")
    atol = None
    if "atol" in parsed.options:
        try:
            atol = float(parsed.options["atol"])
        except ValueError:
            raise ConfigError(f"atol={parsed.options['atol']!r} is not a number (e.g. atol=1e-3)") from None
    merge_run(parsed.run_dir, atol=atol, base=parsed.options.get("base"))
    return 0
