"""The training objective (``objective=sft|dpo|orpo|kto``) and where a run starts (``init.run=<dir>|latest``).

The objective is its own axis, beside the method (full | lora | qlora): ``method=lora objective=dpo``. Each
backend declares which objectives it trains and maps the fields below onto its own config; a setting it cannot
honour is refused at compose time (:mod:`tuneforge.config.validate`). Nothing here imports more than the
standard library and omegaconf.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Optional, get_args

ObjectiveName = Literal["sft", "dpo", "orpo", "kto"]
ReferenceMode = Literal["init", "precomputed"]
OBJECTIVES: tuple[str, ...] = get_args(ObjectiveName)
PREFERENCE_OBJECTIVES = ("dpo", "orpo", "kto")
REFERENCES: tuple[str, ...] = get_args(ReferenceMode)
# the loss types of each objective, as the installed TRL (1.9) spells them; the first is the default. SimPO is
# TRL's CPO trainer with loss_type=simpo (reference-free, length-normalized), reached as objective=dpo
# loss_type=simpo because it trains the same pairs.
LOSS_TYPES: dict[str, tuple[str, ...]] = {
    "sft": ("nll",),
    "dpo": ("sigmoid", "ipo", "hinge", "robust", "simpo"),
    "orpo": ("orpo",),
    "kto": ("kto", "apo_zero_unpaired"),
}
# objectives (or DPO loss types) that need no reference model at all
REFERENCE_FREE = ("orpo", "simpo")


@dataclass
class ObjectiveConfig:
    """What the loss rewards. sft: the reference answers' likelihood. dpo/orpo/kto: preferences."""

    name: str = "sft"  # ObjectiveName: sft | dpo | orpo | kto
    # how far the policy may move from the reference (DPO/KTO), or the odds-ratio weight (ORPO)
    beta: float = 0.1
    loss_type: Optional[str] = None  # null: the objective's default (LOSS_TYPES[name][0])
    # the reference model: init = the starting weights (init.run's model, else the base). With an adapter no
    # second model is loaded: the reference is the same model with the adapter switched off.
    # precomputed = the reference's log-probs computed once before training, then no reference in memory.
    reference: str = "init"  # ReferenceMode
    max_prompt_length: Optional[int] = None  # tokens; null: the whole sequence is cut at hparams.seq_len
    max_completion_length: Optional[int] = None
    simpo_gamma: float = 0.5  # loss_type=simpo: the target reward margin
    # weight of a supervised (NLL) term on the chosen answers beside the preference loss (RPO; CPO's alpha for
    # simpo). 0: the pure preference loss. Without it a small model can push chosen and rejected down together
    # and lose its fluency while the reward margin grows.
    sft_weight: float = 0.0

    @property
    def is_preference(self) -> bool:
        return self.name in PREFERENCE_OBJECTIVES

    @property
    def loss(self) -> str:
        return self.loss_type or LOSS_TYPES.get(self.name, ("?",))[0]

    @property
    def dpo_losses(self) -> tuple[list[str], list[float]]:
        """The DPO loss terms and their weights: the preference loss, plus with ``sft_weight`` > 0 an NLL term on
        the chosen side (RPO), as TRL's multi-loss DPO (``loss_type``/``loss_weights``) and axolotl
        (``dpo_loss_type``/``dpo_loss_weights``) both take them."""
        if self.sft_weight:
            return [self.loss, "sft"], [1.0, self.sft_weight]
        return [self.loss], [1.0]

    @property
    def needs_reference(self) -> bool:
        return self.name in ("dpo", "kto") and self.loss not in REFERENCE_FREE


@dataclass
class InitConfig:
    """Where the weights start: the base model (run: null), or an earlier run's result (its adapter merged
    into its base, or its full model). ``run=latest`` takes the newest finished run of ``recipe``."""

    run: Optional[str] = None  # a run directory, or latest
    recipe: Optional[str] = None  # run=latest: the recipe whose newest finished run to start from
    root: str = "outputs"  # run=latest: where that recipe's runs are (<root>/<recipe>/<timestamp>)


def objective_problems(o: ObjectiveConfig, seq_len: int) -> Iterable[str]:
    """Every problem with an objective config, each naming its key and what is valid."""
    if o.name not in OBJECTIVES:
        yield f"objective.name={o.name!r} is not valid; choose one of: {', '.join(OBJECTIVES)}"
        return
    losses = LOSS_TYPES[o.name]
    if o.loss_type is not None and o.loss_type not in losses:
        yield (f"objective.loss_type={o.loss_type!r} is not valid for objective={o.name}; choose one of: "
               f"{', '.join(losses)}")
    if o.reference not in REFERENCES:
        yield f"objective.reference={o.reference!r} is not valid; choose one of: {', '.join(REFERENCES)}"
    if not o.beta > 0:
        yield f"objective.beta={o.beta} must be > 0 (typical: 0.1 for DPO/KTO, 0.1-0.25 for ORPO)"
    if o.simpo_gamma < 0:
        yield f"objective.simpo_gamma={o.simpo_gamma} must be >= 0"
    if o.sft_weight < 0:
        yield f"objective.sft_weight={o.sft_weight} must be >= 0 (typical: 1.0, as in RPO; 0: off)"
    elif o.sft_weight and o.name in ("orpo", "kto"):
        yield ("objective.sft_weight applies to objective=dpo only: "
               + ("ORPO's loss already has its NLL term (objective.beta weighs the odds ratio)" if o.name == "orpo"
                  else "TRL's KTO loss has no supervised term"))
    for key in ("max_prompt_length", "max_completion_length"):
        v = getattr(o, key)
        if v is not None and not 1 <= v < seq_len:
            yield f"objective.{key}={v} must be in [1, hparams.seq_len={seq_len}) (or null)"
    if o.name == "sft":
        changed = [k for k, d in (("beta", 0.1), ("max_prompt_length", None), ("max_completion_length", None),
                                  ("reference", "init"), ("sft_weight", 0.0)) if getattr(o, k) != d]
        if changed:
            yield (f"objective.{changed[0]} applies to preference objectives only (objective=dpo|orpo|kto); "
                   "objective=sft trains on the reference answers")
    elif o.reference == "precomputed" and not o.needs_reference:
        yield (f"objective.reference=precomputed: objective={o.name} loss_type={o.loss} uses no reference "
               "model; leave objective.reference=init")
