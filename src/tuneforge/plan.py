"""``plan``: everything a launch would use, without launching (and without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge.backends.registry import get_backend
from tuneforge.config.schema import RunConfig
from tuneforge.launch.registry import get_launcher
from tuneforge.rundir import redact, run_to_dict


@dataclass
class Plan:
    run: RunConfig
    resolved: dict[str, Any]
    commands: list[list[str]]
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> content
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = ["# resolved config (secrets redacted)",
               yaml.safe_dump(self.resolved, sort_keys=False, allow_unicode=True).rstrip()]
        for name, content in self.artifacts.items():
            out += ["", f"# {name}", content.rstrip()]
        out += ["", "# command line(s), one per node"]
        out += [" ".join(c) for c in self.commands]
        if self.notes:
            out += ["", "# notes"] + [f"- {n}" for n in self.notes]
        return "\n".join(out)


def make_plan(run: RunConfig, run_dir: Path | None = None) -> Plan:
    backend = get_backend(run.backend.name)
    launcher = get_launcher(run.launcher.name)
    run_dir = run_dir or Path(run.output_root) / run.name / "<timestamp>"
    return Plan(
        run=run,
        resolved=redact(run_to_dict(run)),
        commands=launcher.commands(run, run_dir, backend),
    )
