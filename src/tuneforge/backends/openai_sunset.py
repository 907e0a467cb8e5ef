"""OpenAI's end of self-serve fine-tuning, as ``plan`` states it for a hosted (OpenAI) recipe, with the way off:
the same data trained on an open model that you serve yourself.

The dates (OpenAI's announcement): organisations that had never fine-tuned lost access on 2026-05-07; since
2026-07-02 an organisation without fine-tuned-model inference in the past 60 days cannot create jobs; no new
jobs for anyone after 2027-01-06. Models already fine-tuned keep answering until their base model is retired.
"""

from __future__ import annotations

from datetime import date

from tuneforge.schema.run import RunConfig

NEVER_FINE_TUNED_CUTOFF = date(2026, 5, 7)
INACTIVE_CUTOFF = date(2026, 7, 2)
LAST_JOB_DAY = date(2027, 1, 6)
# the open recipe that trains the same chat data locally: Gemma 3 270M + LoRA (runs on a CPU)
OPEN_RECIPE = "lora-gemma3"


def sunset_notes(run: RunConfig, today: date | None = None) -> list[str]:
    today = today or date.today()
    left = (LAST_JOB_DAY - today).days
    when = (f"{left} days from today" if left > 0 else "today is the last day" if left == 0
            else f"since {LAST_JOB_DAY.isoformat()}: OpenAI will refuse this job")
    return [
        f"OpenAI is ending self-serve fine-tuning: no new jobs for anyone after {LAST_JOB_DAY.isoformat()} ({when}); "
        f"organisations that had never fine-tuned lost access on {NEVER_FINE_TUNED_CUTOFF.isoformat()}; since "
        f"{INACTIVE_CUTOFF.isoformat()} an organisation without fine-tuned-model inference in the past 60 days "
        "cannot create jobs. Fine-tuned models keep answering until their base model is retired.",
        f"the same data on an open model you serve yourself: `tuneforge train recipe={OPEN_RECIPE} "
        f"dataset={run.dataset.name}`, then `tuneforge serve run=latest` (OpenAI chat-completions API on "
        "127.0.0.1) and `tuneforge eval endpoint=http://127.0.0.1:8000/v1 model=<id> run=latest` to score it on "
        "the same wire as the OpenAI model",
    ]
