"""Evaluation of a finished run on its held-out test split, base model vs fine-tuned, and the A/B report.

Everything here reads only the run directory (layout in :mod:`tuneforge.rundir`), never the backend, so
native and axolotl runs are evaluated the same way:

    artifacts.py   open a run directory, check and load its adapter / full model (shared with merge and chat)
    metrics.py     exact match, BLEU, chrF, ROUGE-L
    examples.py    the test split's conversations (sampled across questions) and their assistant-token masks
    runner.py      loss/perplexity on assistant tokens + batched generation -> eval.json
    results.py     the eval.json record and its publication (shared with hosted.py, for backend=openai runs)
    report.py      report.md and a self-contained report.html (metrics table, samples, loss curves)
    retrieval.py   MRR/NDCG/Hit@k for embedding runs; style.py the answering-style checks
    checks.py      the eval group's compose-time checks (no torch: config validation imports it)
"""
