"""axolotl's preference training (its ``rl:`` settings) for objective=dpo: the prepared pairs (TRL's
conversational rows: prompt messages, chosen, rejected) through axolotl's ``chat_template.default`` DPO
strategy, checked by axolotl's own validator like every axolotl config (tuneforge.backends.axolotl).

Mapped: loss sigmoid -> ``rl: dpo``, ipo -> ``rl: ipo``, simpo -> ``rl: simpo`` (+ ``simpo_gamma``,
``cpo_alpha``); ``beta`` -> ``rl_beta``; ``sft_weight`` -> ``dpo_loss_type: [<loss>, sft]`` +
``dpo_loss_weights`` (simpo: ``cpo_alpha``); ``max_prompt_length`` -> ``max_prompt_len``; ``reference:
precomputed`` -> ``precompute_ref_log_probs``. Refused: ORPO and KTO (axolotl reads them from other row shapes:
system/input fields, KTO's chatml/llama3 strategies), hinge/robust losses, a max completion length (axolotl
has none), and ``init.run`` (axolotl loads ``base_model`` only: merge the parent and point model.name_or_path
at it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tuneforge.schema.run import RunConfig

RL_TYPE = {"sigmoid": "dpo", "ipo": "ipo", "simpo": "simpo"}


def rl_problems(run: RunConfig) -> Iterable[str]:
    o = run.objective
    if not o.is_preference:
        return
    if o.name == "dpo" and o.loss not in RL_TYPE:  # other objectives: refused by the declared objectives
        yield f"objective.loss_type={o.loss}: axolotl's rl: has no such loss; choose one of: {', '.join(RL_TYPE)}"
    if run.init.run is not None:
        yield ("init.run: axolotl loads base_model only; merge the parent (tuneforge merge run=...) and set "
               "model.name_or_path=<its merged/ directory>")
    if run.hparams.packing:
        yield "hparams.packing=true: axolotl does not pack preference pairs; set hparams.packing=false"


def rl_settings(run: RunConfig, data: dict[str, Any]) -> dict[str, Any]:
    """The axolotl keys that make a DPO run of the SFT config: ``rl``, its beta, and the pair datasets."""
    o = run.objective

    def pairs(path: Any, split: str = "train") -> dict[str, Any]:
        return {"path": str(path), "ds_type": "json", "type": "chat_template.default", "split": split,
                "field_messages": "prompt", "field_chosen": "chosen", "field_rejected": "rejected"}

    out: dict[str, Any] = {"rl": RL_TYPE[o.loss], "rl_beta": o.beta, "datasets": [pairs(data["train"])],
                           "sample_packing": False, "pad_to_sequence_len": False}
    if "val" in data:
        out["test_datasets"] = [pairs(data["val"])]
    if o.loss == "simpo":
        out.update(simpo_gamma=o.simpo_gamma, cpo_alpha=o.sft_weight)
    elif o.sft_weight:  # the preference loss plus an NLL term on the chosen side (TRL's multi-loss DPO)
        out.update(zip(("dpo_loss_type", "dpo_loss_weights"), o.dpo_losses, strict=True))
    if o.max_prompt_length is not None:
        out["max_prompt_len"] = o.max_prompt_length
    if o.reference == "precomputed":
        out["precompute_ref_log_probs"] = True
    return out
