"""``plan``: everything a launch would use, without launching (and without importing torch).

    tuneforge plan recipe=qlora-llama [gpu=h100-80g] [key=value ...] [--full] [--out DIR] [--validate]
    tuneforge plan --gpus                       the GPU types gpu= names (memory, peak bf16 TFLOP/s, $/hour)

The first screen answers "fits? how long? what cost?" for the target GPU (:mod:`tuneforge.verdict`), then
the memory estimate, the command line(s) and the notes; ``--full`` adds the resolved config and every file.
plan.txt always holds everything. Shows and writes: the resolved config (secrets redacted), the backend's
and launcher's files exactly as the run will write them into its run directory (axolotl.yaml,
ds_config.json, accelerate.yaml, launch.sh), the command line of every node, a memory estimate per GPU
and its warnings. The files go to ``--out`` (default ``<output_root>/<name>/plan/``); ``train`` writes the
same plan as ``plan.txt`` into the run directory.
A run executes what its plan wrote: both use the same builders (``artifacts``/``commands``).

The translations are validated by the targets' own validators before every launch; ``--validate`` runs
them here too (axolotl's and DeepSpeed's imports take seconds, so a plain plan skips them).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge.backends.registry import get_backend
from tuneforge.estimate import MemoryEstimate, estimate_memory
from tuneforge.launch.registry import get_launcher
from tuneforge.rundir import redact, run_to_dict
from tuneforge.schema.run import RunConfig
from tuneforge.verdict import Verdict, make_verdict

PLAN_TEXT = "plan.txt"
MEMORY_JSON = "memory_estimate.json"
MANIFEST = ".plan-files"  # what the last plan wrote into its --out directory (so a re-plan removes the stale)
RUN_DIR_VAR = '"$RUN_DIR"'


@dataclass
class Plan:
    run: RunConfig
    run_dir: Path
    resolved: dict[str, Any]
    commands: list[list[str]]
    artifacts: dict[str, str] = field(default_factory=dict)  # file name (in the run dir) -> content
    memory: MemoryEstimate | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    train_command: str = ""  # the command that runs this plan (cmd_plan: the user's own arguments)

    def command_lines(self) -> list[str]:
        from tuneforge.launch.accelerate import shell_join

        return [shell_join(c) for c in self.commands]

    def render(self, full: bool = True) -> str:
        """The verdict first; then memory, commands, notes; with ``full`` the config and every file too."""
        r = self.run
        out = [(f"# tuneforge plan: {r.name} ({r.method.name} on {r.model.name_or_path}; backend={r.backend.name}, "
                f"launcher={r.launcher.name}, distributed={r.distributed.name})")]
        if self.verdict is not None:
            out += self.verdict.render()
        out += [f"next:      {self.next_command()}", ""]
        if self.memory is not None:
            out += ["# memory estimate per GPU (tuneforge.estimate: formulas and sources in its docstring)",
                    self.memory.render(), ""]
        lines = self.command_lines()
        out += [f"# command line(s), one per node (run directory: {self.run_dir})"]
        out += [f"node {i}: {c}" if len(lines) > 1 else c for i, c in enumerate(lines)]
        if self.notes:
            out += ["", "# notes"] + [f"- {n}" for n in self.notes]
        if self.warnings:
            out += ["", "# WARNINGS"] + [f"- {w}" for w in self.warnings]
        if full:
            out += ["", "# resolved config (secrets redacted)",
                    yaml.safe_dump(self.resolved, sort_keys=False, allow_unicode=True).rstrip()]
            for name, content in self.artifacts.items():
                out += ["", f"# {self.run_dir / name}", content.rstrip()]
        return "\n".join(out) + "\n"

    def next_command(self) -> str:
        return (self.train_command or f"make train recipe={self.run.name}") + (
            "" if self.verdict is None or self.verdict.fits is not False else "   (but it does not fit: see above)")

    def commands_sh(self) -> str:
        """The per-node commands with the run directory as $RUN_DIR (default: a new timestamped one), and
        the plan's files copied into it, so the script runs as written."""
        placeholder = str(self.run_dir)
        stamp = "<timestamp>"
        default = placeholder.replace(stamp, "$(date +%Y-%m-%d_%H-%M-%S)") if stamp in placeholder else placeholder
        body = ["#!/bin/bash", "# what `tuneforge train` runs for this plan, one line per node; `tuneforge train` also",
                "# writes RUNNING / summary.json around it. RUN_DIR=... picks the run directory.", "set -euo pipefail",
                'PLAN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
                f'RUN_DIR="${{RUN_DIR:-{default}}}"', 'mkdir -p "$RUN_DIR"']
        for name in ["config.yaml", *self.artifacts]:
            body.append(f'sed "s#{placeholder}#$RUN_DIR#g" "$PLAN_DIR/{name}" > "$RUN_DIR/{name}"')
        quoted = __import__("shlex").quote(placeholder)
        for line in self.command_lines():
            body.append(line.replace(quoted, RUN_DIR_VAR).replace(placeholder, "$RUN_DIR"))
        return "\n".join(body) + "\n"

    def write(self, out_dir: Path) -> dict[str, Path]:
        """plan.txt, config.yaml, memory_estimate.json, commands.sh and every artifact, into ``out_dir``."""
        from tuneforge.rundir import atomic_write_json, atomic_write_text

        out_dir.mkdir(parents=True, exist_ok=True)
        written = {PLAN_TEXT: out_dir / PLAN_TEXT}
        atomic_write_text(out_dir / PLAN_TEXT, self.render())
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(self.resolved, sort_keys=False,
                                                                  allow_unicode=True))
        atomic_write_text(out_dir / "commands.sh", self.commands_sh())
        (out_dir / "commands.sh").chmod(0o755)
        written["config.yaml"], written["commands.sh"] = out_dir / "config.yaml", out_dir / "commands.sh"
        if self.memory is not None:
            atomic_write_json(out_dir / MEMORY_JSON, self.memory.as_dict())
            written[MEMORY_JSON] = out_dir / MEMORY_JSON
        if self.verdict is not None:
            atomic_write_json(out_dir / "verdict.json", self.verdict.as_dict())
            written["verdict.json"] = out_dir / "verdict.json"
        for name, content in self.artifacts.items():
            atomic_write_text(out_dir / name, content)
            written[name] = out_dir / name
        # files an earlier plan wrote here and this one does not (axolotl.yaml after backend=native) go
        manifest = out_dir / MANIFEST
        if manifest.is_file():
            for name in manifest.read_text().split():
                if name not in written and "/" not in name:
                    (out_dir / name).unlink(missing_ok=True)
        atomic_write_text(manifest, "\n".join(sorted(written)) + "\n")
        return written


def default_run_dir(run: RunConfig) -> Path:
    from tuneforge.rundir import explicit_run_dir, multinode_run_dir

    if run.run_dir:
        return explicit_run_dir(run) or Path(run.run_dir)
    if getattr(run.launcher, "num_nodes", 1) > 1:
        return multinode_run_dir(run)
    return Path(run.output_root) / run.name / "<timestamp>"


def make_plan(run: RunConfig, run_dir: Path | None = None, *, for_target: bool = False) -> Plan:
    """``for_target``: describe the machine the recipe is for (``plan``), not this host (``train``)."""
    if for_target:
        from tuneforge.distributed.devices import describing_target

        with describing_target():
            return make_plan(run, run_dir)
    backend = get_backend(run.backend.name)
    launcher = get_launcher(run.launcher.name)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(run)
    artifacts: dict[str, str] = {}
    artifacts.update(backend.artifacts(run, run_dir))
    artifacts.update(launcher.artifacts(run, run_dir, backend))
    config = run_to_dict(run)  # its secrets are scrubbed from every file and command line of the plan
    artifacts = {name: redact(text, config) for name, text in artifacts.items()}
    commands = [[redact(a, config) for a in c] for c in launcher.commands(run, run_dir, backend)]
    memory = None if backend.hosted else estimate_memory(run)  # no local GPU for a hosted job
    plan = Plan(run=run, run_dir=run_dir, resolved=redact(run_to_dict(run)), commands=commands,
                artifacts=artifacts, memory=memory, warnings=list(memory.warnings) if memory else [])
    if not backend.hosted:  # a batch bigger than the train split (a hosted job sizes its own batches)
        from tuneforge.data.plan_notes import batch_warnings

        plan.warnings += batch_warnings(run)
    plan.verdict = make_verdict(run, memory) if memory else None
    plan.notes += _notes(run, run_dir)
    return plan


def _notes(run: RunConfig, run_dir: Path) -> list[str]:
    notes = []
    c = run.launcher
    if run.launcher.name == "accelerate" and c.num_nodes > 1:
        notes.append(f"{c.num_nodes} nodes: run the same `tuneforge train` with launcher.node_rank=<k> on each node, "
                     f"or start `bash {run_dir}/launch.sh <k>` there once node 0 has written the run directory")
    backend = get_backend(run.backend.name)
    notes += backend.plan_notes(run)  # what its translation is checked by; a hosted job's cost
    if run.distributed.zero_stage is not None:
        notes.append("ds_config.json is checked by deepspeed.runtime.config.DeepSpeedConfig before launch "
                     "(\"auto\" values are filled by the Trainer)")
    from tuneforge.data.plan_notes import plan_notes

    if backend.hosted:
        return notes  # the backend's own data check (openai_calls.txt) has the tokens and the cost
    notes += plan_notes(run)  # split sizes, tokens and OpenAI cost once `make data` has run (cached; no work)
    return notes


def validate_plan(plan: Plan) -> list[str]:
    """Run the targets' own validators on the plan's translations (slow imports). Returns what was checked."""
    from tuneforge.backends.axolotl import AXOLOTL_YAML, validate_axolotl_config
    from tuneforge.distributed.deepspeed import DS_CONFIG_NAME, validate_ds_config

    checked = []
    if DS_CONFIG_NAME in plan.artifacts:
        validate_ds_config(json.loads(plan.artifacts[DS_CONFIG_NAME]), plan.run)
        checked.append(f"{DS_CONFIG_NAME}: accepted by DeepSpeedConfig")
    if AXOLOTL_YAML in plan.artifacts:
        validate_axolotl_config(yaml.safe_load(plan.artifacts[AXOLOTL_YAML]), warnings=plan.warnings)
        checked.append(f"{AXOLOTL_YAML}: accepted by axolotl's validate_config")
    return checked


def write_run_plan(run: RunConfig, run_dir: Path) -> Path:
    """What ``train`` calls: the plan of this very run, as plan.txt (+ memory_estimate.json) in its run dir."""
    from tuneforge.rundir import atomic_write_json, atomic_write_text

    plan = make_plan(run, run_dir)
    for w in plan.warnings:  # shown when the run starts, not only in plan.txt
        print(f"tuneforge: warning: {w}", file=sys.stderr, flush=True)
    atomic_write_text(run_dir / PLAN_TEXT, plan.render())
    if plan.memory is not None:
        atomic_write_json(run_dir / MEMORY_JSON, plan.memory.as_dict())
    return run_dir / PLAN_TEXT


def cmd_plan(args: list[str]) -> int:
    from tuneforge.config.compose import load_run_config
    from tuneforge.errors import ConfigError

    out: Path | None = None
    validate = full = False
    overrides = []
    it = iter(args)
    for a in it:
        if a == "--gpus":
            from tuneforge.verdict import gpu_table

            print(gpu_table())
            return 0
        if a == "--validate":
            validate = True
        elif a == "--full":
            full = True
        elif a == "--out" or a.startswith("--out="):
            value = a.split("=", 1)[1] if "=" in a else next(it, None)
            if not value:
                raise ConfigError("plan --out needs a directory: tuneforge plan recipe=... --out DIR")
            out = Path(value)
        elif a.startswith("--") and a[2:].split("=")[0] in ("help", "h"):
            raise ConfigError("plan: options are --full, --out DIR, --validate, --gpus")
        else:
            overrides.append(a)  # a stray --key value is explained (with the fixed command) by load_run_config
    run = load_run_config(overrides, command="plan")
    plan = make_plan(run, for_target=True)
    from tuneforge.launch.accelerate import shell_join
    from tuneforge.secrets import redact_override

    plan.train_command = redact(shell_join(["tuneforge", "train", *map(redact_override, overrides)]), run_to_dict(run))
    if validate:
        plan.notes += validate_plan(plan)
    out = out or Path(run.output_root) / run.name / "plan"
    try:
        written = plan.write(out)
    except OSError as exc:  # read-only or full output_root: one line, as train says it
        from tuneforge.errors import LaunchError
        from tuneforge.run_ownership import storage_problem

        raise LaunchError(f"cannot write the plan to {out}/: {storage_problem(exc)}") from None
    print(plan.render(full=full), end="")
    more = "" if full else "; --full prints the resolved config and the files here"
    print(f"\n# plan written to {out}/ ({', '.join(sorted(written))}){more}")
    return 0
