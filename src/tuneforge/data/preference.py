"""Preference data: pairs (prompt or conversation + chosen + rejected) and KTO rows (prompt + completion +
desirable), linted with file:line findings, split by group, and written as TRL's conversational rows.

Source rows (JSONL; field names from ``dataset.fields``):

    {"prompt": "Đà Lạt có biển không?", "chosen": "Dạ, không ...", "rejected": "Dạ, Đà Lạt có biển ..."}
    {"messages": [{"role": "user", "content": "..."}], "chosen": [{"role": "assistant", ...}], "rejected": ...}
    {"prompt": "...", "completion": "...", "desirable": true}                       # format: kto

Prepared rows: ``{"prompt": [system?, user...], "chosen": [assistant], "rejected": [assistant]}`` (KTO:
``completion`` + ``label``), which TRL's DPO/ORPO/KTO trainers render with the model's chat template.

Rules beside the SFT ones (tuneforge.data.lint): D080 chosen == rejected, D081 an empty side, D082 no prompt,
D083 the rejected side passes every answer check (tuneforge.data.answer_review: the fact guard, the
style checks, degeneration) while the chosen one fails one, D084 a KTO label that is not yes/no; the fact
guard rejects a *chosen* answer that states a forbidden claim (D070): a rejected one is meant to.
Conservation: every line read is kept, quarantined or skipped, and the splits add up to the rows kept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.lint import FactGuard, FindingLog, ProbeGuard
from tuneforge.errors import DataError
from tuneforge.schema.dataset import DatasetConfig, FieldMap

LABELS = {True: True, False: False, "yes": True, "no": False, "true": True, "false": False}  # 1/0 == True/False


@dataclass
class PreferenceRow:
    line: int
    prompt: list[dict[str, str]]  # system? + user/assistant turns, ending with a user turn
    chosen: str  # kto: the completion
    rejected: str | None = None  # kto: None
    desirable: bool | None = None  # kto only
    category: str | None = None
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def question(self) -> str:
        return next((m["content"] for m in reversed(self.prompt) if m["role"] == "user"), "")

    def to_trl(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt": self.prompt}
        if self.rejected is None:
            row |= {"completion": [{"role": "assistant", "content": self.chosen}], "label": self.desirable}
        else:
            row |= {"chosen": [{"role": "assistant", "content": self.chosen}],
                    "rejected": [{"role": "assistant", "content": self.rejected}]}
        return row | {"category": self.category, "line": self.line}


def _text(value: Any) -> str | None:
    """A side as text: a string, or the assistant contents of a message list (None: not a side at all)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return "\n".join(m["content"] for m in value if m.get("role", "assistant") == "assistant")
    return None


def _prompt(obj: dict, f: FieldMap, system_prompt: str | None) -> list[dict[str, str]] | None:
    raw = obj.get(f.prompt, obj.get(f.messages, obj.get("conversation")))
    if isinstance(raw, str):
        turns = [{"role": "user", "content": raw}] if raw.strip() else []
    elif isinstance(raw, list) and all(isinstance(m, dict) for m in raw):
        turns = [{"role": str(m.get(f.role, "")), "content": str(m.get(f.content, ""))} for m in raw]
    else:
        return None
    if not any(t["role"] == "user" and t["content"].strip() for t in turns):
        return None
    if system_prompt and not any(t["role"] == "system" for t in turns):
        turns = [{"role": "system", "content": system_prompt}, *turns]
    return turns


def parse_row(obj: Any, line: int, ds: DatasetConfig, log: FindingLog) -> PreferenceRow | None:
    """One source object -> a row, or None with the reason in ``log``."""
    f = ds.fields
    if not isinstance(obj, dict):
        log.add(line, "D010", "not a JSON object")
        return None
    prompt = _prompt(obj, f, ds.system_prompt)
    if prompt is None:
        log.add(line, "D082", f"no prompt: expected '{f.prompt}' (text or messages) or '{f.messages}' with a "
                              "user turn")
        return None
    category = obj.get(f.category) if f.category else None
    group = obj.get(f.group) if f.group else None
    common = dict(prompt=prompt, category=category if isinstance(category, str) else None,
                  group=str(group) if group is not None else None)
    if ds.format == "kto":
        completion = _text(obj.get(f.completion))
        if completion is None or not completion.strip():
            log.add(line, "D081", f"'{f.completion}' is missing or empty")
            return None
        label = obj.get(f.desirable)
        key = label.strip().lower() if isinstance(label, str) else label
        if isinstance(key, (bool, int, str)) and key in LABELS:
            return PreferenceRow(line, chosen=completion, desirable=LABELS[key], **common)
        log.add(line, "D084", f"'{f.desirable}'={label!r}: expected true/false or yes/no")
        return None
    sides = {k: _text(obj.get(name)) for k, name in (("chosen", f.chosen), ("rejected", f.rejected))}
    for k, name in (("chosen", f.chosen), ("rejected", f.rejected)):
        if sides[k] is None or not sides[k].strip():
            log.add(line, "D081", f"the {k} side ('{name}') is missing or empty")
            return None
    if " ".join(sides["chosen"].split()) == " ".join(sides["rejected"].split()):
        log.add(line, "D080", "chosen and rejected are the same answer: the pair teaches nothing")
        return None
    return PreferenceRow(line, chosen=sides["chosen"], rejected=sides["rejected"], **common)


class PairChecks:
    """The answer checks of the eval (tuneforge.data.answer_review), applied to each side of a pair."""

    def __init__(self, ds: DatasetConfig):
        self.ds = ds
        self.guard = FactGuard(ds.forbidden_claims, ds.negation)

    def reasons(self, answer: str, row: PreferenceRow) -> list[str]:
        from tuneforge.data.answer_review import review_answer

        reference = row.chosen if row.rejected is not None else None
        return review_answer(self.ds, self.guard, answer, reference=reference, prompt=row.question(),
                             new_tokens=None, max_new_tokens=None)

    def lint(self, row: PreferenceRow, log: FindingLog) -> bool:
        """Records the row's problems; False: the row is rejected."""
        good = [row.chosen] if row.rejected is not None or row.desirable else []
        for text in good:
            for hit in self.guard.find(text):
                log.add(row.line, "D070", f"the chosen answer states a forbidden claim [{hit.id}]: {hit.match!r}"
                                          + (f" ({hit.message})" if hit.message else ""))
                return False
        if row.rejected is not None:
            chosen_fails = self.reasons(row.chosen, row)
            if chosen_fails and not self.reasons(row.rejected, row):
                log.add(row.line, "D083", f"the rejected answer passes every check, the chosen one fails: "
                                          f"{chosen_fails[0]}; swap the sides or fix the chosen answer")
                return False
        return True


def read_preference(ds: DatasetConfig, src: Path, display: str) -> tuple[list[PreferenceRow], FindingLog, dict]:
    """Parse and lint every line; the rows kept, the findings and the line counts."""
    from tuneforge.data.probes import probe_question_keys, probes_path

    log = FindingLog(display)
    checks = PairChecks(ds)
    probe_guard = ProbeGuard(probe_question_keys(ds), str(probes_path(ds))) if ds.probes else None
    rows: list[PreferenceRow] = []
    seen: dict[str, int] = {}
    counts = {"lines": 0, "skipped": 0, "quarantined": 0}
    quarantine: list[dict[str, Any]] = []
    with src.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            counts["lines"] += 1
            text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
            if not text.strip():
                log.add(n, "D004", "blank line")
                counts["skipped"] += 1
                continue
            before = sum(log.counts.values())
            try:
                row = parse_row(json.loads(text), n, ds, log)
            except json.JSONDecodeError as exc:
                log.add(n, "D001", f"invalid JSON: {exc.msg} (column {exc.colno})")
                row = None
            if row is not None and probe_guard:
                problems = probe_guard.check(row.prompt)
                for rule, msg in problems:
                    log.add(n, rule, msg)
                row = None if problems else row
            if row is not None and not checks.lint(row, log):
                row = None
            if row is not None:
                key = json.dumps([row.prompt, row.chosen, row.rejected, row.desirable], ensure_ascii=False)
                if key in seen:
                    log.add(n, "D030", f"the same pair as line {seen[key]}")
                    row = None
                else:
                    seen[key] = n
            if row is None:
                counts["quarantined"] += 1
                quarantine.append({"line": n, "text": text.rstrip("\n"),
                                   "findings": sum(log.counts.values()) - before})
                continue
            rows.append(row)
    counts["kept"] = len(rows)
    return rows, log, {**counts, "quarantine": quarantine}


def group_key(row: PreferenceRow) -> str:
    from tuneforge.data.probes import normalize_question

    return row.group if row.group is not None else normalize_question(row.question())


def split_rows(rows: list[PreferenceRow], ds: DatasetConfig) -> dict[str, list[PreferenceRow]]:
    """The SFT data's grouped split (tuneforge.data.split): all pairs of one prompt land in one split."""
    import numpy as np

    from tuneforge.data.split import SPLIT_NAMES, assign_splits

    keys = np.array([int.from_bytes(hashlib.blake2b(group_key(r).encode(), digest_size=8).digest(), "little")
                     for r in rows], dtype=np.uint64)
    ids = assign_splits(keys, ds.split)
    return {name: [r for r, s in zip(rows, ids) if s == i] for i, name in enumerate(SPLIT_NAMES)}


def prepare_preference(ds: DatasetConfig, src: Path, final: Path, display: str, *,
                       force: bool = False) -> dict[str, Any]:
    """Prepare (or read from the cache) a preference dataset's splits in ``final``; returns its report (cached
    like the SFT splits: report.json, written last, marks the directory complete)."""
    from tuneforge.rundir import atomic_write_json

    report_path = final / "report.json"
    if force or not report_path.is_file():
        rows, log, counts = read_preference(ds, src, display)
        splits = split_rows(rows, ds)
        sizes = {k: len(v) for k, v in splits.items()}
        if counts["kept"] + counts["quarantined"] + counts["skipped"] != counts["lines"] or \
                sum(sizes.values()) != counts["kept"]:
            raise DataError(f"{display}: rows not conserved: {counts['lines']} lines read, {counts['kept']} kept, "
                            f"{counts['quarantined']} quarantined, {counts['skipped']} skipped, splits {sizes}")
        if counts["kept"] < ds.lint.min_examples_error:
            log.add(0, "D050", f"{counts['kept']} pairs kept, at least {ds.lint.min_examples_error} needed")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            for name, part in splits.items():
                with (tmp / f"{name}.jsonl").open("w", encoding="utf-8") as out:
                    out.writelines(json.dumps(r.to_trl(), ensure_ascii=False) + "\n" for r in part)
            with (tmp / "quarantine.jsonl").open("w", encoding="utf-8") as out:
                out.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in counts.pop("quarantine"))
            report = {"dataset": ds.name, "source": display, "format": ds.format, "splits": sizes,
                      "counts": {"lines_read": counts["lines"], "examples_kept": counts["kept"],
                                 "quarantined": counts["quarantined"], "skipped": counts["skipped"]},
                      "findings": log.to_dict(), "exit_status": log.exit_status}
            atomic_write_json(tmp / "report.json", report)
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    if "D050" in report["findings"]["by_rule"]:
        raise DataError(f"dataset {ds.name!r} ({display}) is unusable: {report['counts']['examples_kept']} pairs "
                        f"kept, at least {ds.lint.min_examples_error} needed; see {final / 'quarantine.jsonl'}")
    return report


def findings_text(report: dict[str, Any]) -> list[str]:
    """The report's findings as ``file:line: RULE message`` lines."""
    from tuneforge.data.lint import finding_text

    return [finding_text(i["file"], i["line"], i["rule"], i["message"]) for i in report["findings"]["items"]]
