"""Served path vs in-process generation (issue 18, point 4), same model, prompts, budget and batch size.

One process, one model directory: the `small` base model fine-tuned for a minute on [ACT_ONLY] teacher answers
(so it writes the JSON action and stops, as a trained model does; an untrained one runs every sequence to the
completion budget and every SKU is retried). The SKUs active on one day of a simulated market, their compact
``[ACT_ONLY]`` prompts built as batch pricing builds them (online feature rows, the model's prompt budget counted
with its tokenizer), the same ``max_new_tokens`` and the same batch size (sequences per ``generate`` call):

- **in-process**: ``aigp.align.generation.generate`` on the prompts (what the evaluation and the offline gate run:
  left padding, prompts grouped by length), then Ψ on each answer;
- **served**: ``run_batch_pricing`` (``serving/batch.py``) against ``serving/predictor.py`` started on loopback by
  ``serve_local``, with batch pricing's defaults for prompts per request and requests in flight: features from
  the online store, prompt building, HTTP, batching across requests in the predictor, Ψ, A_safe, the journal;
- **served, client only**: the same prebuilt prompt texts sent with the pricing client
  (``aigp.openai_compat.client.PredictorClient``, same prompts per request and in flight) to the same predictor: the
  server side of the gap alone.

Decisions/s count every SKU decided (a model action or a fallback) per second of wall time; CPU seconds are this
process's plus the predictor's. Each thread count (torch threads per process, the same on both paths) runs
``--repeats`` rounds with the order of the paths alternating (the machine is shared); the median round is reported.
A diagnostic times one batch's prefill against its ``generate`` and the prefill of the prefix all prompts share (what
a shared-prefix KV cache could skip).

    python -m bench.bench_served_vs_inprocess [--skus 600] [--batch 32] [--max-tokens 32] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._report import markdown_table, write_section
from bench.bench_serving import _feature_store


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_children() -> float:
    """CPU seconds of the child processes that have exited (a stopped predictor)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_children_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_model(root: Path, logs: Path, *, seed: int, steps: int, threads: int) -> Path:
    """The `small` base model fine-tuned (full, not LoRA) on [ACT_ONLY] prompts within its budget and the
    teacher's JSON actions: enough to write an action and stop."""
    from aigp.align.sft import SFTStepConfig, run_sft
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.model_factory import SIZES, BaseModelConfig, build_base_model, load_model, token_counter
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.llm.rows import load_prompt_rows

    out = root / "sft_small"
    if (out / "config.json").exists():
        return out
    teacher, corpus = KnowledgeBaseTeacher(), []
    rows = load_prompt_rows(logs, n=240, seed=seed).to_dict("records")
    for row in rows:
        for cfg in (PromptConfig(), PromptConfig(act_only=True)):
            prompt = build_prompt(row, cfg)
            corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    base = build_base_model(root / "base_small", corpus, BaseModelConfig(size="small", seed=seed), overwrite=True)
    _, tokenizer = load_model(base)
    cfg = PromptConfig(act_only=True, max_prompt_tokens=SIZES["small"].prompt_budget)
    records = []
    for row in rows:
        prompt = build_prompt(row, cfg, count_tokens=token_counter(tokenizer))
        records.append({"prompt": prompt.messages,
                        "completion": [{"role": "assistant", "content": teacher.respond(prompt).text}]})
    run_sft(records, base, out, SFTStepConfig.build(
        optim={"learning_rate": 3e-3, "batch_size": 4, "max_steps": steps, "threads": threads, "logging_steps": 20},
        lora={"enabled": False}, validation_share=0.0, act_only_copies=False))
    return out


def served_prompts(model_dir: Path, feature_data: Path, state: Path, date: dt.date, config: Any) -> tuple[list, list]:
    """(feature rows, prompts) of the SKUs batch pricing plans for ``date``, built as its engine builds them."""
    from aigp.llm.knowledge import KnowledgeBase
    from aigp.llm.model_factory import load_model, token_counter
    from aigp.llm.prompt import build_prompt
    from aigp.serving.features import EmbeddedFeatureSource, active_skus

    skus = active_skus(feature_data, date, config.horizon_days)["sku_id"].tolist()
    source = EmbeddedFeatureSource.open(feature_data=feature_data, state_dir=state)
    try:
        rows = source.lookup(skus)
    finally:
        source.close()
    _, tokenizer = load_model(model_dir)
    knowledge, count = KnowledgeBase.load(), token_counter(tokenizer)
    prompts = [build_prompt({**row, "date": date}, config.pricing.prompt, knowledge=knowledge, count_tokens=count)
               for row in rows]
    return rows, prompts


def run_in_process(loaded: Any, rows: list, date: dt.date, config: Any, batch: int,
                   max_tokens: int) -> dict[str, Any]:
    """Prompts built from the feature rows (as the engine builds them), then generated in batches of ``batch``
    sorted by length (``aigp.align.generation.generate``) and parsed by Ψ; the prompt building is timed apart."""
    from aigp.align.generation import GenerationConfig, generate
    from aigp.llm.knowledge import KnowledgeBase
    from aigp.llm.parser import parse_action
    from aigp.llm.prompt import build_prompt

    cpu, t0 = _cpu_self(), time.perf_counter()
    knowledge, count = KnowledgeBase.load(), loaded.counter()
    prompts = [build_prompt({**row, "date": date}, config.pricing.prompt, knowledge=knowledge, count_tokens=count)
               for row in rows]
    built, t1 = _cpu_self(), time.perf_counter()
    texts = generate(loaded, [p.messages for p in prompts], GenerationConfig(max_new_tokens=max_tokens,
                                                                             batch_size=batch))
    parsed = [parse_action(t[0], float(r["prev_discount"])) for t, r in zip(texts, rows, strict=True)]
    wall = time.perf_counter() - t1
    lengths = sorted(len(loaded.tokenizer(p.chatml(), add_special_tokens=False)["input_ids"]) for p in prompts)
    groups = [lengths[i:i + batch] for i in range(0, len(lengths), batch)]
    padding = sum(len(g) * g[-1] - sum(g) for g in groups) / sum(len(g) * g[-1] for g in groups)
    return {"decisions": len(parsed), "model actions": sum(not p.fallback for p in parsed), "generations": len(parsed),
            "wall s": wall, "CPU s": _cpu_self() - built, "prompt s": t1 - t0, "prompt CPU s": built - cpu,
            "batches": f"{len(parsed)} sequences in {len(groups)} batches, padding {100 * padding:.1f}% of the prefill",
            "texts": [t[0] for t in texts]}


def prefill_diagnostic(loaded: Any, rows: list, texts: list[str], batch: int, max_tokens: int) -> str:
    """Is prefill the cost, and how much of it could a shared-prefix KV cache skip? One batch of ``batch`` prompts
    (left-padded, as both paths run them): the prefill forward alone, ``generate``, and the prefill of the prefix
    that every prompt (and every prompt of one category) shares."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]

    def common(group: list[list[int]]) -> int:
        n = min(len(x) for x in group)
        for i in range(n):
            if any(x[i] != group[0][i] for x in group):
                return i
        return n

    by_category: dict[str, list[list[int]]] = {}
    for row, x in zip(rows, ids, strict=True):
        by_category.setdefault(str(row.get("category")), []).append(x)
    shared = common(ids)
    per_category = sorted({common(group) for group in by_category.values() if len(group) > 1})
    enc = tok(texts[:batch], padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    prefix = {"input_ids": enc["input_ids"][:, -1:].new_tensor([ids[0][:shared]] * len(texts[:batch]))}
    seconds, outputs = {}, {}
    with torch.inference_mode():
        for name, call in (("prefill", lambda: model(**enc)), ("prefix", lambda: model(**prefix)),
                           ("generate", lambda: model.generate(**enc, max_new_tokens=max_tokens, do_sample=False,
                                                               pad_token_id=tok.pad_token_id,
                                                               eos_token_id=tok.eos_token_id))):
            call()  # warm-up
            t0 = time.perf_counter()
            outputs[name] = call()
            seconds[name] = time.perf_counter() - t0
    decoded = outputs["generate"].shape[1] - enc["input_ids"].shape[1]
    median = statistics.median(len(x) for x in ids)
    share = 100 * seconds["prefill"] / seconds["generate"]
    return (f"- Where a batch's time goes ({len(texts[:batch])} prompts, padded to {enc['input_ids'].shape[1]} "
            f"tokens): the prefill forward takes {seconds['prefill']:.2f} s of `generate`'s "
            f"{seconds['generate']:.2f} s ({share:.0f}%); the {decoded} decoding steps are the rest. Every "
            f"prompt shares its first {shared} tokens (system prompt and prompt version) of {median:.0f} (median); "
            f"within one category it is {', '.join(map(str, per_category))} tokens: the "
            "category's knowledge base comes after the SKU's own fields in the prompt, so there is no per-category "
            f"prefix to prefill once. Prefilling the shared {shared} tokens for the batch takes "
            f"{seconds['prefix']:.2f} s ({100 * seconds['prefix'] / seconds['generate']:.0f}% of `generate`): the most "
            "a shared-prefix KV cache could save on this model and prompt.")


def run_served(model_dir: Path, date: dt.date, config: Any, batch: int, threads: int) -> dict[str, Any]:
    """``run_batch_pricing`` with the model served by the local predictor (``serve_local``) for the run."""
    from aigp.serving.batch import run_batch_pricing

    resolver = lambda name, ref: ("bench", str(model_dir))  # noqa: E731 - no registry
    cpu, children = _cpu_self(), _cpu_children()
    summary = run_batch_pricing(date, config, resolver=resolver, serve_local=True, overwrite=True, progress=False,
                                serve_options={"max_batch_size": batch, "threads": threads})
    return {"decisions": summary.skus, "model actions": summary.model_actions,
            "generations": summary.skus + summary.retried, "wall s": summary.seconds["pricing"],
            "CPU s": _cpu_self() - cpu + _cpu_children() - children,
            "batches": _batch_stats(Path(summary.paths.run_dir) / "predictor-vbench.log"),
            "whole run s": summary.seconds["total"]}


def _batch_stats(log: Path) -> str:
    """The predictor's own account of its batches (the line it logs when it stops)."""
    lines = [line for line in log.read_text().splitlines() if "sequences in" in line and " batches (" in line]
    return lines[-1].split("generated ", 1)[1] if lines else "(not logged)"


def run_client(base: str, prompts: list[str], settings: Any, predictor_pid: int) -> dict[str, Any]:
    """The prebuilt prompt texts through the pricing client, ``request_size`` per request, ``concurrency`` at once."""
    from aigp.openai_compat.client import PredictorClient

    async def go() -> list:
        client = PredictorClient(base, "aigp-pricing", settings)
        slots = asyncio.Semaphore(settings.concurrency)
        size = settings.request_size

        async def one(chunk: list[str]) -> list:
            async with slots:
                return await client.complete(chunk, temperature=0.0)

        try:
            parts = await asyncio.gather(*(one(prompts[i:i + size]) for i in range(0, len(prompts), size)))
        finally:
            await client.aclose()
        return [r for part in parts for r in part]

    cpu, server_cpu, t0 = _cpu_self(), _cpu_children_of(predictor_pid), time.perf_counter()
    results = asyncio.run(go())
    wall = time.perf_counter() - t0
    return {"decisions": len(results), "generations": len(results), "wall s": wall,
            "CPU s": _cpu_self() - cpu + _cpu_children_of(predictor_pid) - server_cpu,
            "texts": [r.text for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=600, help="SKUs in the simulated market (20 launch days)")
    parser.add_argument("--horizon-days", type=int, default=6, help="SKUs priced: those in their first N days")
    parser.add_argument("--batch", type=int, default=32, help="sequences per generate() call, both paths")
    parser.add_argument("--max-tokens", type=int, default=32, help="completion budget, both paths")
    parser.add_argument("--threads", default="1,2", help="torch threads per process, both paths (comma-separated)")
    parser.add_argument("--sft-steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2, help="rounds per thread count (order alternates)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--root", type=Path, default=None, help="keep the market and model here (reused)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aigp-bench-served-") as tmp:
        root = args.root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        body = measure(root, args, started)
    policy = f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} " if "OMP_WAIT_POLICY" in os.environ else ""
    write_section("served_vs_inprocess", "Serving: the served path vs in-process generation (same model)", body,
                  f"{policy}python -m bench.bench_served_vs_inprocess --skus {args.skus} "
                  f"--horizon-days {args.horizon_days} "
                  f"--batch {args.batch} --max-tokens {args.max_tokens} --threads {args.threads} "
                  f"--sft-steps {args.sft_steps} --repeats {args.repeats}"
                  + (f" --root {args.root}" if args.root else ""))
    print(body)


NAMES = ("in-process: generate", "served: run_batch_pricing", "served: client only")


def measure(root: Path, args: argparse.Namespace, started: float) -> str:
    import json

    import torch

    from aigp.align.generation import LoadedModel, chat_texts
    from aigp.llm.model_factory import SIZES
    from aigp.llm.prompt import PromptConfig
    from aigp.pricing import PredictorSettings, PricingConfig
    from aigp.serving.batch import BatchPricingConfig

    threads = [int(t) for t in str(args.threads).split(",")]
    if (root / "date.json").exists():
        feature_data, state = root / "features", root / "state"
        date = dt.date.fromisoformat(json.loads((root / "date.json").read_text())["date"])
    else:
        feature_data, state, date = _feature_store(root, args.skus, args.seed)
        (root / "date.json").write_text(json.dumps({"date": date.isoformat()}))
    t0 = time.perf_counter()
    model_dir = train_model(root, root / "market", seed=args.seed, steps=args.sft_steps, threads=max(threads))
    print(f"model ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    pricing = PricingConfig(predictor=PredictorSettings(max_tokens=args.max_tokens, timeout_s=1800),
                            prompt=PromptConfig(act_only=True, max_prompt_tokens=SIZES["small"].prompt_budget))
    config = BatchPricingConfig(pricing=pricing, out_dir=root / "pricing", horizon_days=args.horizon_days,
                                feature_data=feature_data, feature_state_dir=state)
    rows, prompts = served_prompts(model_dir, feature_data, state, date, config)
    loaded = LoadedModel.load(model_dir)
    texts = [p.chatml() for p in prompts]
    assert chat_texts(loaded.tokenizer, [p.messages for p in prompts]) == texts, "chat template != ChatML"
    lengths = [len(loaded.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    torch.set_num_threads(threads[0])
    diagnostic = prefill_diagnostic(loaded, rows, texts, args.batch, args.max_tokens)
    print(diagnostic, flush=True)
    table, same, all_results = [], [], {}
    for count in threads:
        torch.set_num_threads(count)
        results = compare(root, args, count, loaded, model_dir, rows, texts, date, config, started)
        same.append(sum(a == b for a, b in zip(results[NAMES[0]][0]["texts"], results[NAMES[2]][0]["texts"],
                                                strict=True)))
        table += table_rows(results, count)
        all_results[count] = results
    body = (
        f"Model: `small` fine-tuned {args.sft_steps} steps on [ACT_ONLY] teacher answers; {len(prompts)} SKUs active "
        f"on {date} (first {args.horizon_days} days), compact [ACT_ONLY] prompts of {min(lengths)}-{max(lengths)} "
        f"tokens (median {statistics.median(lengths):.0f}), greedy, {args.max_tokens} completion tokens at most, "
        f"batches of {args.batch} sequences on both paths. Served: {pricing.predictor.request_size} prompts per "
        f"request, {pricing.predictor.concurrency} requests in flight (batch pricing's defaults). Greedy texts "
        f"identical in-process and served: {min(same)}/{len(texts)}. {args.repeats} rounds per thread count, the "
        "order of the paths alternating (the machine is shared). OpenMP wait policy: in-process "
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset (the runtime default)')}, the local predictor "
        f"{os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')} (`serve_local_predictor`'s default).\n\n"
        + markdown_table(table) + "\n\n"
        + notes(all_results[threads[0]]) + "\n" + diagnostic
        + f"\n\nTotal benchmark wall time {time.perf_counter() - started:.0f} s."
    )
    return body


def compare(root: Path, args: argparse.Namespace, threads: int, loaded: Any, model_dir: Path, rows: list,
            texts: list[str], date: dt.date, config: Any, started: float) -> dict[str, list[dict]]:
    """``args.repeats`` rounds of the three paths at ``threads`` torch threads per process."""
    from aigp.serving.predictor import serve_local_predictor

    results: dict[str, list[dict]] = {name: [] for name in NAMES}
    for r in range(args.repeats):
        for mode in (("in-process", "served") if r % 2 == 0 else ("served", "in-process")):
            if mode == "in-process":
                results[NAMES[0]].append(run_in_process(loaded, rows, date, config, args.batch, args.max_tokens))
                continue
            results[NAMES[1]].append(run_served(model_dir, date, config, args.batch, threads))
            log = root / f"client-predictor-{threads}-{r}.log"
            with serve_local_predictor(model_dir, max_batch_size=args.batch, threads=threads, log_path=log) as base:
                client = run_client(base, texts, config.pricing.predictor, _predictor_pid())
            client["batches"] = _batch_stats(log)
            results[NAMES[2]].append(client)
        for name in NAMES:
            last = results[name][-1]
            print(f"[{time.perf_counter() - started:5.0f} s] {threads} thread(s), round {r}: {name}: "
                  f"{last['decisions'] / last['wall s']:.2f} decisions/s; {last['batches']}", flush=True)
    return results


def table_rows(results: dict[str, list[dict]], threads: int) -> list[dict]:
    def median_run(runs: list[dict]) -> tuple[float, dict]:  # the lower median of an even count: a real round
        rate, i = sorted((x["decisions"] / x["wall s"], i) for i, x in enumerate(runs))[(len(runs) - 1) // 2]
        return rate, runs[i]

    out = []
    base_rate, _ = median_run(results[NAMES[0]])
    for name, runs in results.items():
        rate, run = median_run(runs)
        out.append({"threads": threads, "path": name, "decisions": run["decisions"], "generations": run["generations"],
                    "model actions": run.get("model actions", ""), "wall s": run["wall s"], "CPU s": run["CPU s"],
                    "decisions/s": rate,
                    "each round": ", ".join(f"{x['decisions'] / x['wall s']:.2f}" for x in runs),
                    "served / in-process": rate / base_rate, "batches": run["batches"]})
    return out


def notes(results: dict[str, list[dict]]) -> str:
    inproc, served = results[NAMES[0]], results[NAMES[1]]
    prompt_s = statistics.median(x["prompt s"] for x in inproc)
    whole = statistics.median(x["whole run s"] for x in served)
    return ("- OpenMP threads that spin while they wait lose their turn to any other busy process: with 2 threads on "
            "2 shared cores, a round can run several times slower than the next (see `each round`); run with "
            "`OMP_WAIT_POLICY=PASSIVE`, as the local predictor now does by default, to compare 2-thread rounds.\n"
            f"- decisions/s: decisions over wall seconds of the median round (the lower one of two). "
            "In-process times `generate` + Ψ on prompts built beforehand (building them took "
            f"{prompt_s:.1f} s more, {len(inproc[0]['texts']) / prompt_s:.0f} prompts/s: the prompt budget is counted "
            "with the tokenizer, several encodings per prompt); the served run's wall time is its `pricing` stage "
            "(`summary.seconds`), which includes reading the features and building the prompts but not starting the "
            f"predictor: the whole `run_batch_pricing` call took {whole:.1f} s (plan, predictor start, pricing, "
            "report).\n"
            "- CPU s: in-process, this process; served, this process plus the predictor (for `run_batch_pricing` "
            "the predictor's CPU includes its start-up: imports, model load).\n"
            "- batches: the predictor's own account when it stops (`BatchedGenerator.stats`); in-process, the batches "
            "`generate` makes (all prompts sorted by length).")


def _predictor_pid() -> int:
    """The pid of the local predictor this process started."""
    import psutil

    found = [c.pid for c in psutil.Process().children(recursive=True)
             if "aigp.serving.predictor" in " ".join(c.cmdline())]
    if len(found) != 1:
        raise RuntimeError(f"expected one local predictor process, found {found}")
    return found[0]


if __name__ == "__main__":
    main()
