"""``tuneforge ab report run=<dir>``: the A/B log of a served run (``<run>/ab/log.jsonl``), per arm.

Per arm: the requests it answered and their share (next to the declared share), the ratings (mean and count;
a later rating of the same answer replaces an earlier one) and the eval's answer checks on its answers (the
usable rate and the reasons, :func:`tuneforge.evaluation.answer_checks.review_answers`, with the run's dataset
rules). Writes ``<run>/ab/report.json``. An answer whose client left mid-stream is counted as a request and
left out of the answer checks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, RunArtifactError


def ab_report(run_dir: Path) -> dict[str, Any]:
    from tuneforge.evaluation.answer_checks import review_answers
    from tuneforge.evaluation.hosted import answer_length
    from tuneforge.rundir import atomic_write_json, read_config
    from tuneforge.serve.ab import ab_log_path, read_log

    path = ab_log_path(run_dir)
    if not path.is_file():
        raise RunArtifactError(f"{path} does not exist: serve the run with two arms first (tuneforge serve "
                               f"run={run_dir} serve.ab.run_b=<dir> or serve.ab.base=true)")
    records = read_log(path)
    starts = [r for r in records if r["event"] == "start"]
    answers = [r for r in records if r["event"] == "answer"]
    ratings = {r["id"]: r for r in records if r["event"] == "feedback"}  # the last rating of an answer counts
    run = read_config(run_dir)
    decoding_max = run.eval.max_new_tokens
    total = len(answers)
    arms: dict[str, Any] = {}
    for name in ("a", "b"):
        mine = [r for r in answers if r["arm"] == name]
        done = [r for r in mine if r.get("complete", True)]
        rated = [ratings[r["id"]]["rating"] for r in mine if r["id"] in ratings]
        # cut off against the request's own max_tokens; review_answers takes one limit, so each answer's
        # verdict is carried as a length at or below the run's
        cut = []
        for r in done:
            limit = int(r.get("max_tokens") or decoding_max)
            cut.append(answer_length(int(r.get("completion_tokens") or 0), r.get("finish_reason"), limit) >= limit)
        checks = review_answers(run.dataset, [r["answer"] for r in done], references=[None] * len(done),
                                prompts=[r["prompt"] for r in done],
                                new_tokens=[decoding_max if c else 0 for c in cut],
                                max_new_tokens=decoding_max) if done else None
        arms[name] = {
            "models": sorted({r["model"] for r in mine}),
            "requests": len(mine), "share": len(mine) / total if total else 0.0, "incomplete": len(mine) - len(done),
            "ratings": {"count": len(rated), "mean": sum(rated) / len(rated) if rated else None},
            "usable_rate": checks["usable_rate"] if checks else None,
            "n_usable": checks["n_usable"] if checks else 0,
            "reason_counts": checks["reason_counts"] if checks else {},
        }
    report = {"run_dir": str(run_dir), "log": str(path), "requests": total,
              "declared_share_b": sorted({s["share"] for s in starts}), "server_starts": len(starts),
              "arms_declared": starts[-1]["arms"] if starts else {}, "arms": arms,
              "unknown_feedback": sum(1 for i in ratings if i not in {r["id"] for r in answers})}
    atomic_write_json(path.with_name("report.json"), report)
    return report


def report_table(report: dict[str, Any]) -> str:
    declared = report["declared_share_b"]
    lines = [f"tuneforge ab report: {report['run_dir']}  ({report['requests']} requests; declared share of arm B "
             f"{', '.join(f'{s:.0%}' for s in declared) or '?'}; {report['server_starts']} server start(s))",
             f"  {'arm':<4}{'model':<40}{'requests':>9}{'share':>8}{'ratings':>9}{'mean':>7}{'usable':>9}"]
    for name, a in report["arms"].items():
        mean = f"{a['ratings']['mean']:.2f}" if a["ratings"]["mean"] is not None else "-"
        usable = f"{a['usable_rate']:.1f}%" if a["usable_rate"] is not None else "-"
        lines.append(f"  {name:<4}{', '.join(a['models']) or '-':<40}{a['requests']:>9}{a['share']:>8.0%}"
                     f"{a['ratings']['count']:>9}{mean:>7}{usable:>9}")
    for name, a in report["arms"].items():
        if a["reason_counts"]:
            lines.append(f"  arm {name} unusable: " + ", ".join(f"{k} {v}" for k, v in a["reason_counts"].items()))
        if a["incomplete"]:
            lines.append(f"  arm {name}: {a['incomplete']} answer(s) left mid-stream, not checked")
    lines.append(f"  log {report['log']}  report {Path(report['log']).with_name('report.json')}")
    return "\n".join(lines)


def cmd_ab(args: list[str]) -> int:
    """tuneforge ab report run=<dir>"""
    from tuneforge.runs import resolve_run

    if not args or args[0] != "report":
        raise ConfigError("usage: tuneforge ab report run=<dir>   (the A/B log of `tuneforge serve run=<dir> "
                          "serve.ab.run_b=<dir>|serve.ab.base=true`)")
    runs = [a.partition("=")[2] for a in args[1:] if a.startswith("run=")]
    extra = [a for a in args[1:] if not a.startswith("run=")]
    if len(runs) != 1 or extra:
        raise ConfigError(f"tuneforge ab report takes run=<dir> only (got {' '.join(args[1:]) or 'nothing'})")
    report = ab_report(resolve_run(runs[0]))
    print(report_table(report), file=sys.stdout)
    return 0
