"""``tuneforge <command> [key=value ...]``: Hydra-style overrides, one clear line on a user error.

    tuneforge train recipe=qlora-tiny optim.lr=1e-4     (also: tuneforge recipe=... with no command)
    tuneforge plan  recipe=qlora-llama
    tuneforge train my.yaml                             (a recipe file: tuneforge cp lora-tiny my.yaml)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from tuneforge.console import configure_logging
from tuneforge.data_command import cmd_data
from tuneforge.errors import TuneforgeError
from tuneforge.evaluation.runner import cmd_eval
from tuneforge.inference import cmd_chat
from tuneforge.jobs import cmd_cancel, cmd_jobs
from tuneforge.merge import cmd_merge
from tuneforge.recipes import cmd_cp, cmd_recipes
from tuneforge.runs import cmd_runs
from tuneforge.sweep.command import cmd_sweep


def cmd_train(args: list[str]) -> int:
    from tuneforge.config.compose import load_run_config
    from tuneforge.train import train

    yes = "--yes" in args  # a hosted job above backend.max_cost_usd starts without asking
    run = load_run_config([a for a in args if a != "--yes"])
    summary = train(run, yes=yes)
    if not summary.get("submitted"):
        from tuneforge.runs import next_steps

        print(next_steps(summary))
    return 0


def cmd_search(args: list[str]) -> int:
    from tuneforge.evaluation.retrieval import cmd_search as search_command  # imports torch: only when used

    return search_command(args)


def cmd_serve(args: list[str]) -> int:
    from tuneforge.serve.command import cmd_serve as serve_command  # imports transformers' server: only when used

    return serve_command(args)


def cmd_export(args: list[str]) -> int:
    from tuneforge.serve.export_command import cmd_export as export_command

    return export_command(args)


def cmd_ab(args: list[str]) -> int:
    from tuneforge.serve.ab_report import cmd_ab as ab_command

    return ab_command(args)


def cmd_plan(args: list[str]) -> int:
    from tuneforge.plan import cmd_plan as plan_command  # prints + writes the plan (--out DIR, --validate)

    return plan_command(args)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (cmd_train, "compose a run and train it"),
    "plan": (cmd_plan, "print everything a launch would use; no training"),
    "data": (cmd_data, "prepare a dataset (data prepare dataset=NAME) or lint a file (data lint FILE)"),
    "eval": (cmd_eval, "base vs fine-tuned on the test split: eval run=DIR -> eval.json, report.html"),
    "merge": (cmd_merge, "merge a LoRA adapter into its base: merge run=DIR -> DIR/merged/ (parity-checked)"),
    "chat": (cmd_chat, "chat with a run: chat run=DIR [prompt=\"...\"] (interactive without prompt)"),
    "serve": (cmd_serve, "serve a run over the OpenAI chat API: serve run=DIR [serve.port=8000] [--plan]"),
    "ab": (cmd_ab, "an A/B served with serve.ab.*, per arm: ab report run=DIR (requests, share, ratings, usable)"),
    "export": (cmd_export, "a run as GGUF (llama.cpp, Ollama): export run=DIR [export.quant=f16|q8_0], round-tripped"),
    "sweep": (cmd_sweep, "hyperparameter sweep: sweep [sweep=grid|optuna] 'optim.lr=1e-4,3e-4' -> results table"),
    "search": (cmd_search, "top passages of an embedding run's corpus: search run=DIR query=\"...\" [k=5]"),
    "jobs": (cmd_jobs, "submitted Slurm, Ray and OpenAI runs with their state and run dir: jobs [output_root=DIR]"),
    "cancel": (cmd_cancel, "cancel a run's hosted (OpenAI) fine-tuning job or stop its Ray job: cancel run=DIR"),
    "runs": (cmd_runs, "local runs: status, recipe, losses, eval; runs compare RUN RUN -> Markdown + HTML"),
    "recipes": (cmd_recipes, "the recipes with their one-line purpose"),
    "cp": (cmd_cp, "copy a recipe to edit: cp qlora-llama my.yaml; then train my.yaml"),
}


def _recipe_names() -> list[str]:
    from tuneforge.paths import recipes_dir

    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def usage() -> str:
    lines = ["usage: tuneforge <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "examples:", "  tuneforge train recipe=qlora-tiny optim.lr=1e-4 hparams.max_steps=30",
              "  tuneforge plan recipe=qlora-llama"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("--version", "-V", "version"):
        from importlib.metadata import version

        print(f"tuneforge {version('tuneforge')}")
        return 0
    if "=" in argv[0] or argv[0].startswith("-") or argv[0].endswith((".yaml", ".yml")):
        argv = ["train", *argv]
    if "--verbose" in argv or "-v" in argv:  # the Trainer's raw logs and bars; inherited by worker processes
        argv = [a for a in argv if a not in ("--verbose", "-v")]
        os.environ["TUNEFORGE_VERBOSE"] = "1"
    if not argv:
        print(usage())
        return 2
    name, args = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        print(f"tuneforge: unknown command '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")
              + f"\n\n{usage()}", file=sys.stderr)
        return 2
    if name in ("train", "plan") and any(a in ("-h", "--help") for a in args):
        print(f"usage: tuneforge {name} [recipe=NAME] [group=option ...] [key=value ...]\n\n"
              f"  {COMMANDS[name][1]}\n  recipes: {', '.join(_recipe_names())}\n"
              "  groups: method model dataset optim hparams backend launcher distributed tracking\n"
              "  `tuneforge plan ...` prints the fully resolved config with every key that can be overridden.")
        return 0
    configure_logging()
    try:
        return COMMANDS[name][0](args)
    except TuneforgeError as exc:
        print(f"tuneforge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tuneforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tuneforge plan | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
