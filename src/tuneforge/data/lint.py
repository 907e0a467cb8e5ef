"""Lint rules with stable ids, the findings log, the per-row checks and the fact guard.

Each finding prints as ``file:line: RULE message``; one about the whole file prints as ``file: RULE
message (whole file)`` (line 0 in report.json). A rule has a severity
(error | warning) and an action: ``reject`` sends the row to the quarantine file with its reason, ``keep``
leaves it in the data, ``skip`` drops a line that is not a row (a blank line), ``dataset`` is about the
whole file. Ids never change meaning; new rules get new ids.

Exit status of ``tuneforge data lint`` / ``data prepare``:
    0  clean: no findings
    1  warnings only
    2  errors (rows were rejected, or the dataset is unusable), or the input could not be read
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.data.records import ROLES, is_nfc, nfc
from tuneforge.schema.dataset import ForbiddenClaim

EXIT_CLEAN, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2
EXIT_MEANING = {EXIT_CLEAN: "clean", EXIT_WARNINGS: "warnings", EXIT_ERRORS: "errors"}


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str  # error | warning
    action: str  # reject | keep | skip | dataset
    summary: str


RULES: dict[str, Rule] = {r.id: r for r in [
    Rule("D001", "invalid-json", "error", "reject", "the line is not valid JSON"),
    Rule("D002", "bad-encoding", "error", "reject", "the line is not valid UTF-8"),
    Rule("D003", "bom", "warning", "keep", "the file starts with a byte-order mark (stripped on output)"),
    Rule("D004", "blank-line", "warning", "skip", "a blank line (not a row)"),
    Rule("D010", "bad-schema", "error", "reject", "not an object, or a field is missing or of the wrong type"),
    Rule("D011", "missing-role", "error", "reject", "a message has no role"),
    Rule("D012", "unknown-role", "error", "reject", "a role other than system, user, assistant"),
    Rule("D013", "wrong-order", "error", "reject",
         "not [system], then user/assistant alternating, ending with assistant"),
    Rule("D014", "empty-content", "error", "reject", "a message is empty or whitespace"),
    Rule("D020", "too-long", "warning", "keep",
         "the example exceeds the token limit (run's tokenizer); the trainer truncates it"),
    Rule("D021", "oversized-line", "error", "reject",
         "the line is longer than 8 MiB: rejected unread, so one row cannot exhaust memory"),
    Rule("D030", "duplicate", "warning", "reject", "the same example appeared on an earlier line"),
    Rule("D031", "near-duplicate", "warning", "reject",
         "same example up to case, punctuation and spacing as an earlier line"),
    Rule("D032", "contradiction", "warning", "keep", "same normalized question, different answer"),
    Rule("D040", "inconsistent-system-prompt", "warning", "keep",
         "the system prompt differs from the one most examples use"),
    Rule("D050", "too-few-examples", "error", "dataset", "fewer examples than lint.min_examples_error"),
    Rule("D051", "few-examples", "warning", "dataset", "fewer examples than lint.min_examples_warning"),
    Rule("D060", "category-imbalance", "warning", "dataset",
         "a category is missing, or the largest is over lint.max_category_ratio x the smallest"),
    Rule("D061", "unknown-category", "warning", "keep", "a category not in lint.categories"),
    Rule("D070", "forbidden-claim", "error", "reject", "an answer states a claim the dataset forbids (fact guard)"),
    Rule("D071", "probe-question", "error", "reject",
         "a question repeats a probe question (dataset.probes): probes are held out, never trained on"),
    # preference data (tuneforge.data.preference)
    Rule("D080", "same-sides", "error", "reject", "the chosen answer is identical to the rejected one"),
    Rule("D081", "empty-side", "error", "reject", "the chosen or the rejected answer (KTO: the completion) is empty"),
    Rule("D082", "missing-prompt", "error", "reject", "the pair has no prompt (or no user turn)"),
    Rule("D083", "inverted-pair", "error", "reject",
         "the rejected answer passes every answer check while the chosen one fails one: swapped sides?"),
    Rule("D084", "bad-label", "error", "reject", "KTO: desirable is not true/false (yes/no)"),
]}

REJECTING = frozenset(r.id for r in RULES.values() if r.action == "reject")


def finding_text(file: str, line: int, rule: str, message: str) -> str:
    """``file:line: RULE message``; a whole-file finding (line 0) names the file alone and says so."""
    if line <= 0:
        return f"{file}: {rule} {message} (whole file)"
    return f"{file}:{line}: {rule} {message}"


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return finding_text(self.file, self.line, self.rule, self.message)

    def to_dict(self) -> dict[str, Any]:
        r = RULES[self.rule]
        return {"file": self.file, "line": self.line, "rule": self.rule, "name": r.name,
                "severity": r.severity, "message": self.message}


class FindingLog:
    """Counts every finding per rule; keeps the first ``cap`` of each rule (memory stays flat at 1M rows)."""

    def __init__(self, file: str, cap: int = 200):
        self.file = file
        self.cap = cap
        self.counts: Counter[str] = Counter()
        self.items: dict[str, list[Finding]] = {}

    def add(self, line: int, rule: str, message: str) -> None:
        self.counts[rule] += 1
        kept = self.items.setdefault(rule, [])
        if len(kept) < self.cap:
            kept.append(Finding(self.file, line, rule, message))

    def add_many(self, rule: str, lines: Sequence[int], messages: Sequence[str], total: int) -> None:
        """``total`` findings of one rule, of which the first lines/messages are given."""
        if total <= 0:
            return
        self.counts[rule] += total
        kept = self.items.setdefault(rule, [])
        for line, msg in zip(lines, messages):
            if len(kept) >= self.cap:
                break
            kept.append(Finding(self.file, int(line), rule, msg))

    def merge(self, other: FindingLog) -> None:
        for rule, n in other.counts.items():
            self.counts[rule] += n
            kept = self.items.setdefault(rule, [])
            kept.extend(other.items.get(rule, [])[: max(0, self.cap - len(kept))])

    def count(self, severity: str) -> int:
        return sum(n for rule, n in self.counts.items() if RULES[rule].severity == severity)

    @property
    def exit_status(self) -> int:
        if self.count("error"):
            return EXIT_ERRORS
        return EXIT_WARNINGS if self.count("warning") else EXIT_CLEAN

    def sorted_items(self) -> list[Finding]:
        return sorted((f for fs in self.items.values() for f in fs), key=lambda f: (f.line, f.rule))

    def to_dict(self) -> dict[str, Any]:
        return {
            "errors": self.count("error"),
            "warnings": self.count("warning"),
            "by_rule": {rule: {"name": RULES[rule].name, "severity": RULES[rule].severity,
                               "action": RULES[rule].action, "count": n}
                        for rule, n in sorted(self.counts.items())},
            "items": [f.to_dict() for f in self.sorted_items()],
            "items_cap_per_rule": self.cap,
        }


# --- per-row checks -------------------------------------------------------------------------------------


def _valid_orders(max_turns: int = 16) -> frozenset[tuple[str, ...]]:
    pairs = [("user", "assistant") * n for n in range(1, max_turns + 1)]
    return frozenset([*pairs, *(("system", *p) for p in pairs)])


_VALID_ORDERS = _valid_orders()
_ROLE_SET = frozenset(ROLES)


def check_messages(messages: Any) -> tuple[list[dict[str, str]] | None, list[tuple[str, str]]]:
    """Shape, roles, order and empty content of one conversation -> (canonical messages, problems).

    Canonical messages hold only role and content (NFC-normalized). The order rule: an optional system
    message first, then user and assistant alternating, starting with user and ending with assistant.
    """
    if type(messages) is list:  # fast path for a valid row (the million-row case); problems take the slow one
        roles = []
        changed = False
        for m in messages:
            if type(m) is not dict:
                break
            role, content = m.get("role"), m.get("content")
            if role not in _ROLE_SET or type(content) is not str or not content or content.isspace():
                break
            if len(m) != 2 or not is_nfc(content):
                changed = True
            roles.append(role)
        else:
            if tuple(roles) in _VALID_ORDERS:
                if not changed:
                    return messages, []  # already canonical: the caller may reuse the source text
                return [{"role": m["role"], "content": nfc(m["content"])} for m in messages], []
    return _check_slow(messages)


def _check_slow(messages: Any) -> tuple[list[dict[str, str]] | None, list[tuple[str, str]]]:
    if not isinstance(messages, list) or not messages:
        return None, [("D010", "no messages" if isinstance(messages, list) else "messages is not a list")]
    problems: list[tuple[str, str]] = []
    out: list[dict[str, str]] = []
    roles_ok = True
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            problems.append(("D010", f"message {i} is not an object"))
            roles_ok = False
            continue
        role, content = m.get("role"), m.get("content")
        if role is None:
            problems.append(("D011", f"message {i} has no role"))
            roles_ok = False
        elif role not in ROLES:
            problems.append(("D012", f"message {i} has unknown role {role!r} (valid: {', '.join(ROLES)})"))
            roles_ok = False
        if not isinstance(content, str):
            what = "no content" if content is None else f"content of type {type(content).__name__}"
            problems.append(("D010", f"message {i} ({role}) has {what}"))
            content = ""
        elif not content.strip():
            problems.append(("D014", f"message {i} ({role}) is empty"))
        out.append({"role": role, "content": nfc(content)})
    if roles_ok:
        problems.extend(_order_problems([m["role"] for m in out]))
    return (out if not problems else None), problems


def _order_problems(roles: list[str]) -> Iterable[tuple[str, str]]:
    start = 1 if roles[0] == "system" else 0
    if start == len(roles):
        yield "D013", "only a system message: expected user and assistant turns after it"
        return
    for i in range(start, len(roles)):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if roles[i] != expected:
            hint = " (a system message may only come first)" if roles[i] == "system" else ""
            yield "D013", f"message {i + 1} is {roles[i]!r}, expected {expected!r}{hint}"
            return
    if roles[-1] != "assistant":
        yield "D013", f"the conversation ends with {roles[-1]!r}; it must end with an assistant answer"


# a sentence or list item; a point between digits ("1.500 m", "2.5") does not end one
_SENTENCE = re.compile(r"(?:[^.!?;\n]|\.(?=\d))+[.!?;]*")
_CLAUSE = re.compile(r"[,;:](?!\d)\s*")


@dataclass(frozen=True)
class ClaimHit:
    id: str
    match: str  # the text that states the claim
    message: str  # what is right instead
    check: str  # "pattern" (the claim's regex) or "concepts" (the paraphrase check)


class FactGuard:
    """Forbidden claims (dataset.forbidden_claims), matched case-insensitively against answers, two ways:

    - ``pattern``: the claim's regex, unless its sentence denies it (``dataset.negation``: "không có biển ở Đà
      Lạt" is the right fact, not the claim);
    - ``concepts``: a paraphrase check that does not depend on wording or word order: a sentence states the
      claim when every concept regex matches it, it has no negation and ``unless`` does not match it.
    """

    def __init__(self, claims: Sequence[ForbiddenClaim], negation: str | None = None):
        self.claims = [(c.id, re.compile(nfc(c.pattern), re.IGNORECASE), c.message,
                        [re.compile(nfc(x), re.IGNORECASE) for x in c.concepts],
                        re.compile(nfc(c.unless), re.IGNORECASE) if c.unless else None) for c in claims]
        self.negation = re.compile(nfc(negation), re.IGNORECASE) if negation else None

    def __bool__(self) -> bool:
        return bool(self.claims)

    def _denied(self, sentence: str) -> bool:
        return bool(self.negation and self.negation.search(sentence))

    def _states(self, sentence: str, concepts: list[re.Pattern[str]]) -> bool:
        """Every concept in the sentence, and not denied: the whole sentence undenied, or, when a negation
        stands in it, one clause (split at , ; :) that holds every concept with no negation of its own ("Đà Lạt
        không có biển, nên anh/chị có thể tắm biển ở Đà Lạt" states the claim in its second clause)."""
        if not all(c.search(sentence) for c in concepts):
            return False
        if not self._denied(sentence):
            return True
        return any(all(c.search(clause) for c in concepts) and not self._denied(clause)
                   for clause in _CLAUSE.split(sentence))

    def find(self, text: str) -> list[ClaimHit]:
        """Every forbidden claim ``text`` states: the regex hits, then the paraphrase hits in sentences that no
        regex caught (one sentence is one finding, whichever claims it matches)."""
        text = nfc(text)
        sentences = [(m.start(), m.group(0)) for m in _SENTENCE.finditer(text)]
        hits: list[ClaimHit] = []
        caught: set[int] = set()  # starts of the sentences a regex caught
        for claim_id, rx, why, _, _ in self.claims:
            for m in rx.finditer(text):
                start = max((s for s, _ in sentences if s <= m.start()), default=0)
                # the negation that counts stands in the match's own clause ("..., nên có thể tắm biển ở Đà Lạt")
                clause = max((b.end() for b in _CLAUSE.finditer(text, start, m.start())), default=start)
                if not self._denied(text[clause:m.end()]):
                    hits.append(ClaimHit(claim_id, m.group(0), why, "pattern"))
                    caught.add(start)
                    break
        for claim_id, _, why, concepts, unless in self.claims:
            if not concepts:
                continue
            for start, sentence in sentences:
                if start in caught:
                    continue
                if self._states(sentence, concepts) and not (unless and unless.search(sentence)):
                    hits.append(ClaimHit(claim_id, sentence.strip(), why, "concepts"))
                    caught.add(start)
                    break
        return hits

    def check(self, messages: list[dict[str, str]]) -> list[tuple[str, str]]:
        problems = []
        for i, m in enumerate(messages, 1):
            if m["role"] != "assistant":
                continue
            for hit in self.find(m["content"]):
                how = "" if hit.check == "pattern" else ", paraphrase check"
                msg = f"message {i} states a forbidden claim [{hit.id}{how}]: {hit.match!r}"
                problems.append(("D070", f"{msg} ({hit.message})" if hit.message else msg))
        return problems


class ProbeGuard:
    """Training rows must not repeat a probe question (``dataset.probes``): the probes measure what a model does
    with questions it has never seen."""

    def __init__(self, keys: dict[str, int], path: str):
        self.keys, self.path = keys, path

    def __bool__(self) -> bool:
        return bool(self.keys)

    def check(self, messages: list[dict[str, str]]) -> list[tuple[str, str]]:
        from tuneforge.data.probes import normalize_question

        problems = []
        for i, m in enumerate(messages, 1):
            if m["role"] != "user":
                continue
            q = normalize_question(m["content"])
            line = self.keys.get(q) or next((n for k, n in self.keys.items() if q.endswith(" " + k)), None)
            if line is not None:
                problems.append(("D071", f"message {i} repeats the probe question on line {line} of {self.path}; "
                                         "probes are held out: reword or drop the row, or the probe"))
        return problems
