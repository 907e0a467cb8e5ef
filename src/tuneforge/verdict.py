"""The first screen of ``plan``: will it fit, how long, what cost (no torch, no tokenizer download).

    fits?      the memory estimate per GPU against the target GPU (``gpu=<type>`` or launcher.gpu_memory_gb)
    how long?  steps x tokens per step -> FLOPs (nanoGPT's estimate_mfu: 6·N + 12·L·h·s per token for full
               training; a frozen base skips its weight gradients: 4·N; activation checkpointing adds one
               more forward: +2·N) / (GPUs x peak bf16 FLOP/s x the assumed MFU)
    what cost? GPU-hours x gpu.usd_per_hour, next to OpenAI's fine-tuning price for the same train tokens

Tokens come from the run's prepared data: the exact counts of ``make data`` when it has run for this
tokenizer, else an estimate from the characters of the prepared train split (labelled as one), so a
gated tokenizer that cannot be had offline never fails a plan.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.estimate import MemoryEstimate, model_shape
from tuneforge.schema.run import RunConfig
from tuneforge.strategies.registry import get_strategy

CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for BPE tokenizers on mixed text; only for the labelled estimate
TOKENS_PER_MESSAGE = 4  # chat-template overhead per message (role header + end marker) in that estimate


@dataclass
class DataSize:
    examples: int | None = None  # train split
    tokens: int | None = None  # train split, chat template included
    exact: bool = False
    source: str = ""  # how the numbers were had, for the screen
    problem: str = ""  # why there are none


def data_size(run: RunConfig) -> DataSize:
    """The train split's examples and tokens: make data's exact counts, else a labelled estimate."""
    from tuneforge.data.prepare import prepared_dir, source_path, tokens_key

    try:
        if not source_path(run.dataset).is_file():
            return DataSize(problem=f"dataset source {run.dataset.path} not found")
        d = prepared_dir(run.dataset)
        exact = d / f"report-tokens-{tokens_key(run)}.json"
        if exact.is_file():
            rep = json.loads(exact.read_text(encoding="utf-8"))
            return DataSize(rep["splits"].get("train"), rep["tokens"]["per_split"]["train"]["total"], True,
                            f"counted by `make data` with {rep['tokens']['tokenizer']}")
        from tuneforge.data.prepare import prepare_splits

        prep = prepare_splits(run.dataset)  # lint + split only (cached): no tokenizer
        chars = messages = 0
        with Path(prep.train).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)  # a conversation, or a preference row: both sides are forwarded
                    msgs = row.get("messages") or [*row["prompt"], *row.get("chosen", []), *row.get("rejected", []),
                                                   *row.get("completion", [])]
                    messages += len(msgs)
                    chars += sum(len(m.get("content") or "") for m in msgs)
        tokens = int(chars / CHARS_PER_TOKEN + messages * TOKENS_PER_MESSAGE)
        return DataSize(prep.sizes.get("train"), tokens, False,
                        f"an ESTIMATE at ~{CHARS_PER_TOKEN:g} characters/token; "
                        f"`make data recipe={run.name}` counts them with the tokenizer")
    except Exception as exc:  # noqa: BLE001 - the verdict must never fail a plan
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DataSize(problem=f"no data size ({first})")


@dataclass
class Verdict:
    run: RunConfig
    memory: MemoryEstimate
    data: DataSize
    gpus: int
    limit_gib: float | None = None
    limit_source: str = ""
    steps: int | None = None
    samples_per_step: int = 0
    tokens_per_step: int | None = None
    flops_per_token: float | None = None
    wall_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        return None if self.limit_gib is None else self.memory.total_gib <= self.limit_gib

    @property
    def gpu_hours(self) -> float | None:
        return None if self.wall_s is None else self.wall_s * self.gpus / 3600

    @property
    def usd(self) -> float | None:
        price = self.run.gpu.usd_per_hour
        return None if self.gpu_hours is None or price is None else self.gpu_hours * price

    def as_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "per_gpu_gib": round(self.memory.total_gib, 2), "limit_gib": self.limit_gib,
                "limit_source": self.limit_source, "gpu": self.run.gpu.name, "gpus": self.gpus,
                "steps": self.steps, "tokens_per_step": self.tokens_per_step,
                "train_examples": self.data.examples, "train_tokens": self.data.tokens,
                "tokens_exact": self.data.exact, "wall_hours": None if self.wall_s is None
                else round(self.wall_s / 3600, 3), "gpu_hours": None if self.gpu_hours is None
                else round(self.gpu_hours, 3), "usd": None if self.usd is None else round(self.usd, 2),
                "mfu_assumed": self.run.gpu.mfu}

    def render(self) -> list[str]:
        r, m = self.run, self.memory
        g = r.gpu
        out = []
        total = m.total_gib
        if self.limit_gib is None:
            from tuneforge.distributed.devices import runs_on_cpu

            where = "runs on this host's CPU" if runs_on_cpu(r) else "no target GPU named"
            out.append(f"fits?      {where}; {total:.1f} GiB per GPU on a GPU. For a verdict: gpu=<type> "
                       "(tuneforge plan --gpus) or launcher.gpu_memory_gb=N")
        else:
            pct = 100 * total / self.limit_gib
            word = "YES" if self.fits else "NO"
            head = (f"{self.limit_gib - total:.1f} GiB headroom" if self.fits
                    else f"{total - self.limit_gib:.1f} GiB over")
            where = (f"{self.gpus} x {g.name}" if self.limit_source.startswith("gpu=")
                     else f"{self.gpus} GPU{'s' if self.gpus > 1 else ''} [{self.limit_source}]")
            out.append(f"fits?      {word}: {total:.1f} of {self.limit_gib:g} GiB per GPU ({pct:.0f} %, {head}) "
                       f"on {where}")
            if not self.fits and m.warnings:
                out.append(f"           {m.warnings[0].split('; ', 1)[-1]}")
        h = r.hparams
        if self.steps is None:
            out.append(f"how long?  unknown: {self.data.problem or 'no data size'}")
        else:
            shape = f"{h.micro_batch_size} x {h.grad_accumulation} accum x {self.gpus} GPU"
            per = (f"{self.tokens_per_step:,} tokens/step ({shape} x {h.seq_len}, packed)" if h.packing
                   else f"~{self.tokens_per_step:,} tokens/step ({shape} x ~{self._mean_tokens():,})")
            bound = f"max_steps={h.max_steps}" if h.max_steps > 0 else _epochs(h.epochs)
            out.append(f"how long?  {self.steps:,} steps ({bound}) x {per}"
                       f" = {self.steps * self.tokens_per_step / 1e6:,.2f} M tokens")
            if self.wall_s is not None:
                out.append(f"           ~{_duration(self.wall_s)} wall, {self.gpu_hours:,.2f} GPU-hours at "
                           f"{g.bf16_tflops:g} TFLOP/s bf16 peak x MFU {g.mfu:g} (assumed: gpu.mfu)")
            else:
                out.append("           wall time: name a GPU type (gpu=<type>) for its peak FLOP/s")
        costs = []
        if self.usd is not None:
            costs.append(f"{self.gpu_hours:,.2f} GPU-h x ${g.usd_per_hour:g}/GPU-h = ${self.usd:,.2f}"
                         "   (gpu.usd_per_hour=...)")
        elif g.bf16_tflops is None:
            costs.append("name a GPU type (gpu=<type>) for a price")
        if self.data.tokens:
            from tuneforge.data.stats import cost_epochs, openai_cost

            c = openai_cost(self.data.tokens, cost_epochs(h))
            costs.append(f"OpenAI fine-tuning of the same tokens x {_epochs(c['epochs'])}: "
                         + ", ".join(f"{k.split('-20')[0]} ${v:,.2f}" for k, v in c["usd"].items()))
        out.append("cost?      " + "\n           ".join(costs))
        if self.data.tokens is not None:
            approx = "" if self.data.exact else "~"
            out.append(f"data       {r.dataset.name} train split: {self.data.examples:,} examples, "
                       f"{approx}{self.data.tokens:,} tokens")
            out.append(f"           ({self.data.source})")
        return out

    def _mean_tokens(self) -> int:
        return round(self.data.tokens / max(self.data.examples or 1, 1)) if self.data.tokens else 0


def _epochs(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def flops_per_token(run: RunConfig) -> float:
    shape, _ = model_shape(run)
    params = float(run.model.num_parameters or shape.num_parameters())
    if not get_strategy(run).uses_adapter:  # every weight gets a gradient
        k = 6.0
    else:  # forward 2N; backward 2N for activation gradients, but only down to the lowest adapted layer
        k = 2.0 + 2.0 * _backward_depth(run, shape.layers)
    if run.hparams.gradient_checkpointing:
        k += 2.0
    attention = 12.0 * shape.layers * shape.hidden * run.hparams.seq_len * (k / 6.0)
    return k * params + attention


def _backward_depth(run: RunConfig, layers: int) -> float:
    """The share of the decoder the backward pass goes through: from the lowest adapted layer up."""
    from tuneforge.strategies.registry import adapted_layers

    chosen = adapted_layers(run.method.layers_to_transform, layers) if layers else None
    if not chosen:
        return 1.0
    return (layers - min(chosen)) / layers


def make_verdict(run: RunConfig, memory: MemoryEstimate, data: DataSize | None = None) -> Verdict:
    from tuneforge.distributed.deepspeed import world_size
    from tuneforge.schema.gpu import target_memory_gb

    data = data if data is not None else data_size(run)
    gpus = world_size(run)
    limit, source = target_memory_gb(run)
    v = Verdict(run, memory, data, gpus, limit, source)
    h = run.hparams
    v.samples_per_step = h.micro_batch_size * h.grad_accumulation * gpus
    if data.tokens is None or not data.examples:
        if h.max_steps > 0 and h.packing:
            v.steps, v.tokens_per_step = h.max_steps, v.samples_per_step * h.seq_len
    else:
        mean = data.tokens / data.examples
        if h.packing:
            sequences = math.ceil(data.tokens / h.seq_len)
            v.tokens_per_step = v.samples_per_step * h.seq_len
        else:
            sequences = data.examples
            v.tokens_per_step = round(v.samples_per_step * min(mean, h.seq_len))
        per_epoch = max(1, math.ceil(sequences / v.samples_per_step))
        v.steps = h.max_steps if h.max_steps > 0 else max(1, math.ceil(h.epochs * per_epoch))
    if v.steps is not None and run.gpu.bf16_tflops:
        v.flops_per_token = flops_per_token(run)
        total = v.steps * v.tokens_per_step * v.flops_per_token
        v.wall_s = total / (gpus * run.gpu.bf16_tflops * 1e12 * run.gpu.mfu)
    return v


def gpu_table() -> str:
    """The GPU types of conf/gpu/ as a Markdown table (``tuneforge plan --gpus``)."""
    import yaml

    from tuneforge.paths import conf_dir

    rows = ["| gpu= | memory (GiB usable) | peak bf16 TFLOP/s (dense) | $/GPU-hour (default) |",
            "|---|---:|---:|---:|"]
    for p in sorted((conf_dir() / "gpu").glob("*.yaml")):
        c = yaml.safe_load(p.read_text())
        if c.get("memory_gb") is None:
            continue
        rows.append(f"| {c['name']} | {c['memory_gb']:g} | {c['bf16_tflops']:g} | {c['usd_per_hour']:.2f} |")
    return "\n".join(rows)
