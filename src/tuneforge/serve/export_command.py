"""``tuneforge export run=<dir> [export.format=gguf] [export.quant=f16|q8_0|bf16|f32]``

-> ``<run>/export/gguf/<model id>-<quant>.gguf`` + ``Modelfile.<quant>`` (Ollama) + ``roundtrip-<quant>.json``.

The merged model (``tuneforge merge``, built first when missing) is written with gguf_export.py, then loaded
back with transformers' GGUF loader (a real GGUF runtime, independent of the writer) and compared with the
merged model: the tokenizer must give the same ids on the test conversations, the chat template must be the
run's, the greedy answers to the first test prompts must be equal, and the logits must agree within
``ROUNDTRIP_RTOL[quant] x max|logit|`` with top-1 agreement >= ``MIN_TOP1[quant]``. Past that the export fails
and nothing is published (it is built in a temporary directory and renamed at the end).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, RunArtifactError

# max |Δlogit| allowed, as a fraction of the largest |logit| of the merged model on the same tokens
ROUNDTRIP_RTOL = {"f32": 1e-4, "f16": 1e-2, "bf16": 3e-2, "q8_0": 5e-2}
MIN_TOP1 = {"f32": 1.0, "f16": 0.99, "bf16": 0.97, "q8_0": 0.95}
PROBES = 4
PROBE_TOKENS = 24


def _greedy(model: Any, tokenizer: Any, messages: list[list[dict]], cfg: Any) -> list[str]:
    import torch

    from tuneforge.evaluation.runner import generation_config

    out = []
    for msgs in messages:
        enc = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**enc, generation_config=generation_config(tokenizer, cfg))
        out.append(tokenizer.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def _loader_tokenizer(gguf: Path, tokenizer: Any, texts: list[str], source_gguf: Path | None
                      ) -> tuple[Any, dict[str, bool], str | None]:
    """transformers' tokenizer for ``gguf``, its checks, and the tokenizer to generate with.

    The loader must split the test conversations as the run's tokenizer does. One known exception: for a
    SentencePiece-BPE vocabulary (``tokenizer.ggml.model = llama``, Gemma) transformers builds a Unigram model
    over the BPE rank scores (huggingface/transformers#41494), which splits rarer words differently ("user" ->
    "us" "er"). When it splits the base model's own GGUF, the file the export copied its vocabulary from, the
    same way, the difference is the loader's, not the export's: that equality becomes the check, and the
    weights are compared under the run's tokenizer. llama.cpp's tokenizer, the one Ollama runs, is held to the
    run's tokenizer either way (llama_cpp_check)."""
    from transformers import AutoTokenizer

    def split(tok: Any) -> list[list[int]]:
        return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]

    g_tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loader_ids = split(g_tok)
    if loader_ids == split(tokenizer) or source_gguf is None:
        return g_tok, {"token_ids_equal": loader_ids == split(tokenizer)}, None
    base = AutoTokenizer.from_pretrained(str(source_gguf.parent), gguf_file=source_gguf.name)
    same = split(base) == loader_ids
    note = ("transformers' GGUF tokenizer splits the test conversations differently from the run's tokenizer, "
            f"and {'identically to' if same else 'differently from'} how it splits the base model's own GGUF "
            f"({source_gguf.name}): a loader limitation (huggingface/transformers#41494, a Unigram over BPE "
            "rank scores); the weights are compared under the run's tokenizer")
    return g_tok, {"token_ids_same_as_base_gguf": same}, note


def round_trip(art: Any, merged: Path, gguf: Path, quant: str, tokenizer: Any,
               source_gguf: Path | None = None) -> dict[str, Any]:
    """Load ``gguf`` with transformers' GGUF loader and compare it with ``merged``."""
    import dataclasses

    import torch
    from transformers import AutoModelForCausalLM

    from tuneforge.evaluation.artifacts import load_full_model
    from tuneforge.evaluation.examples import load_test_examples
    from tuneforge.merge import compare_logits, logits_of, parity_batch

    g_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    ref = load_full_model(merged, art.run).float().eval()
    ids, mask = parity_batch(art, tokenizer, PROBES)
    texts = [tokenizer.decode(row[m.bool()]) for row, m in zip(ids, mask, strict=True)]
    g_tok, tok_checks, tok_note = _loader_tokenizer(gguf, tokenizer, texts, source_gguf)
    ref_logits = logits_of(ref, ids, mask)
    logits = compare_logits(ref_logits, logits_of(g_model, ids, mask), mask)
    cfg = dataclasses.replace(art.run.eval, max_new_tokens=PROBE_TOKENS, do_sample=False)
    prompts = [ex.prompt_messages for ex in load_test_examples(art.run, PROBES)]
    want = _greedy(ref, tokenizer, prompts, cfg)
    got = _greedy(g_model, tokenizer if tok_note else g_tok, prompts, cfg)
    limit = ROUNDTRIP_RTOL[quant] * logits["max_abs_logit"]
    checks = {**tok_checks, "chat_template_kept": g_tok.chat_template == tokenizer.chat_template,
              "greedy_answers_equal": want == got, "logits_within_tolerance": logits["max_abs_diff"] <= limit,
              "top1_agreement_ok": logits["top1_agreement"] >= MIN_TOP1[quant]}
    from tuneforge.serve.llama_cpp_check import llama_cpp_available, llama_cpp_check

    del g_model
    if llama_cpp_available():  # what Ollama and llama-server run: its kernels, its template, its stop tokens
        native = llama_cpp_check(gguf, tokenizer, ids, mask, ref_logits, prompts, want, rtol=ROUNDTRIP_RTOL[quant],
                                 min_top1=MIN_TOP1[quant], max_tokens=PROBE_TOKENS)
        checks.update({f"llama.cpp {k}": ok for k, ok in native["checks"].items()})
    else:
        native = {"skipped": "llama-cpp-python is not installed (pip install llama-cpp-python compiles llama.cpp)"}
    return {"runtime": "transformers GGUF loader", "tokenizer_note": tok_note, "llama_cpp": native, "quant": quant,
            "logits": logits, "atol": limit,
            "rtol": ROUNDTRIP_RTOL[quant], "min_top1": MIN_TOP1[quant], "probes": len(prompts),
            "probe_tokens": PROBE_TOKENS, "answers": [{"merged": w, "gguf": g} for w, g in zip(want, got, strict=True)],
            "checks": checks, "passed": all(checks.values())}


def export_run(run_dir: Path, quant: str, *, quiet: bool = False) -> dict[str, Any]:
    from tuneforge.evaluation.artifacts import load_run_tokenizer, open_run
    from tuneforge.inference import training_system_prompt
    from tuneforge.models import _gguf_file
    from tuneforge.rundir import atomic_write_json
    from tuneforge.serve.command import run_label
    from tuneforge.serve.gguf_export import write_gguf
    from tuneforge.serve.model_dir import model_source, refuse_hosted, served_model_id
    from tuneforge.serve.ollama import modelfile

    t0 = time.perf_counter()
    refuse_hosted(Path(run_dir), "export")
    art = open_run(run_dir)
    merged = model_source(art, merge=True)
    tokenizer = load_run_tokenizer(art, merged)
    source_gguf = _gguf_file(art.run.model.gguf)[0] if art.run.model.gguf else None
    final = art.run_dir / "export" / "gguf"
    tmp = final.with_name(f".gguf.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    name = f"{served_model_id(art.run_dir)}-{quant}.gguf"
    try:
        info = write_gguf(merged, tmp / name, quant=quant, chat_template=tokenizer.chat_template,
                          tokenizer=tokenizer, source_gguf=source_gguf, name=served_model_id(art.run_dir))
        (tmp / f"Modelfile.{quant}").write_text(modelfile(name, tokenizer, art.run.eval, training_system_prompt(art),
                                                 run_label(art.run_dir)), encoding="utf-8")
        check = round_trip(art, merged, tmp / name, quant, tokenizer, source_gguf)
        record = {"run_dir": str(art.run_dir), "gguf": str(final / name), **info, "roundtrip": check,
                  "seconds": round(time.perf_counter() - t0, 1)}
        atomic_write_json(tmp / f"roundtrip-{quant}.json", record)
        if not check["passed"]:
            failed = [k for k, ok in check["checks"].items() if not ok]
            split = (check.get("llama_cpp") or {}).get("tokens") or {}
            if "llama.cpp token_ids_equal" in failed:  # name how the two tokenizers differ
                failed[failed.index("llama.cpp token_ids_equal")] = (
                    f"llama.cpp token_ids_equal (llama.cpp splits the {check['probes']} test conversations into "
                    f"{split['llama.cpp']} tokens, the run's tokenizer into {split['run']}; first difference "
                    f"{split['first_difference']['llama.cpp']} vs {split['first_difference']['run']})")
            final.mkdir(parents=True, exist_ok=True)  # the evidence, under a name no runtime picks up as an export
            failed_record = final / f"roundtrip-{quant}.failed.json"
            atomic_write_json(failed_record, {**record, "gguf": None})
            raise RunArtifactError(
                f"GGUF round trip failed for {art.run_dir} ({quant}): {', '.join(failed)}; max |Δlogit| "
                f"{check['logits']['max_abs_diff']:.3g} (tolerance {check['atol']:.3g}), top-1 agreement "
                f"{check['logits']['top1_agreement']:.3f}; no GGUF was written (the comparison: {failed_record})")
        final.mkdir(parents=True, exist_ok=True)  # one file set per quant; other quants stay
        (final / f"roundtrip-{quant}.failed.json").unlink(missing_ok=True)
        for f in tmp.iterdir():
            os.replace(f, final / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        c = record["roundtrip"]
        print(f"\ntuneforge export: {final / name}  ({info['bytes'] / 2**20:.1f} MiB, {quant}, {info['architecture']}, "
              f"tokenizer {info['tokenizer']}, chat template inside)\n"
              f"  round trip  {c['runtime']}: max |Δlogit| {c['logits']['max_abs_diff']:.3g} (tolerance "
              f"{c['atol']:.3g} = {c['rtol']:g} x max|logit|), top-1 {c['logits']['top1_agreement'] * 100:.1f}%, "
              f"greedy answers equal on {c['probes']} test prompts: OK\n"
              + (f"  note        {c['tokenizer_note']}\n" if c["tokenizer_note"] else "") +
              f"  ollama      cd {final} && ollama create {served_model_id(art.run_dir)} -f Modelfile.{quant}\n"
              f"  details     {final / f'roundtrip-{quant}.json'}")
    return record


def cmd_export(args: list[str]) -> int:
    from tuneforge.evaluation.run_args import parse_run_args
    from tuneforge.serve.gguf_export import QUANTS

    parsed = parse_run_args("export", args, {"export.format": "gguf", "export.quant": "|".join(QUANTS)})
    fmt = parsed.options.get("export.format", "gguf")
    if fmt != "gguf":
        raise ConfigError(f"export.format={fmt!r} is not one of: gguf (the merged HF model is `tuneforge merge`)")
    quant = parsed.options.get("export.quant", "f16")
    if quant not in QUANTS:
        raise ConfigError(f"export.quant={quant!r} is not one of: {', '.join(QUANTS)}")
    export_run(parsed.run_dir, quant)
    return 0
