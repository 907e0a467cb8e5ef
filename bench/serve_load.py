"""Load on a served run: N concurrent clients (the official `openai` SDK) for S seconds against `tuneforge serve`.

    python bench/serve_load.py --base-url http://127.0.0.1:8000/v1 --run DIR [--clients 8] [--seconds 60]
                               [--max-tokens 64] [--out bench/results/serve_load.md]

Each client sends the run's test-split questions in turn (non-streaming chat completions, greedy) until the
time is up; a request already sent when it ends is waited for and counted. Reports p50/p95 latency, completion
tokens/s over the wall time, requests and errors, as a Markdown table (and the raw numbers as JSON beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    import openai

    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.rundir import read_config

    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("bench/results/serve_load.md"))
    a = p.parse_args()
    run = read_config(a.run)
    prompts = [ex.prompt_messages for ex in load_test_examples(run, 64)]
    key = os.environ.get("TUNEFORGE_SERVE_API_KEY") or "no-key"
    model = openai.OpenAI(base_url=a.base_url, api_key=key, max_retries=0).models.list().data[0].id
    latencies: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + a.seconds

    def client(i: int) -> None:
        c = openai.OpenAI(base_url=a.base_url, api_key=key, max_retries=0, timeout=600)
        n = i
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                r = c.chat.completions.create(model=model, messages=prompts[n % len(prompts)], max_tokens=a.max_tokens,
                                              temperature=0)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    tokens.append(r.usage.completion_tokens if r.usage else 0)
            except openai.OpenAIError as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            n += a.clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip() or platform.processor()
    res = {"model": model, "run": str(a.run), "clients": a.clients, "seconds": a.seconds, "wall_s": round(wall, 1),
           "max_tokens": a.max_tokens, "requests": len(latencies), "errors": len(errors), "error_samples": errors[:5],
           "p50_s": round(percentile(latencies, 50), 2), "p95_s": round(percentile(latencies, 95), 2),
           "completion_tokens": sum(tokens), "tokens_per_s": round(sum(tokens) / wall, 2),
           "requests_per_min": round(60 * len(latencies) / wall, 1), "cpu": cpu, "cores": os.cpu_count()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    table = (f"# Load on `tuneforge serve` ({model})\n\n"
             f"{a.clients} concurrent clients (openai SDK, non-streaming, greedy, max_tokens {a.max_tokens}) for "
             f"{a.seconds:.0f} s; wall {res['wall_s']} s including the requests in flight at the end. "
             f"Machine: {cpu}, {res['cores']} cores, CPU only; transformers' server generates one request at a "
             "time (no continuous batching on CPU), so latency is mostly queueing.\n\n"
             "| clients | requests | errors | p50 latency s | p95 latency s | completion tokens/s | requests/min |\n"
             "|---:|---:|---:|---:|---:|---:|---:|\n"
             f"| {a.clients} | {res['requests']} | {res['errors']} | {res['p50_s']} | {res['p95_s']} | "
             f"{res['tokens_per_s']} | {res['requests_per_min']} |\n\n"
             f"Command: `python bench/serve_load.py --base-url {a.base_url} --run {a.run} --clients {a.clients} "
             f"--seconds {a.seconds:.0f} --max-tokens {a.max_tokens}`\n")
    a.out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
