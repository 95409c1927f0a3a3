"""What within-state ranking the LTVE's inputs allow (issue 20): the same critic network fitted by plain regression
to Monte-Carlo returns of *randomised* candidate actions, against the offline critic trained on the log.

    .venv/bin/python -m bench.bench_ltve_ceiling --models-dir runs/bench/ltve_diagnostics/models

The offline critic learns Q(s, a) from one logged action per state and one future of it. Its within-state
Spearman against the Monte-Carlo truth (``bench_ltve_diagnostics``) stays far below the truth's own noise ceiling.
This benchmark separates three reasons, on the same held-out expert states and candidates as that benchmark:

- **what the state shows**: the critic sees the observable state (price, sales, reviews, ...), the truth depends
  on the SKU's hidden traits too. A network fitted to the *mean* Monte-Carlo return of every candidate of N
  training states (counterfactual labels, little label noise) is bounded by that and by N; the same fit with
  the hidden traits (the simulator's quality, brand strength, listing appeal) added to its inputs shows how much
  of the gap they explain; the same fit with the **review score** added (the mean lexicon score of every review
  posted so far, what a person reading the reviews concludes; observable, and the simulator draws each review
  around the SKU's quality, which sets its price elasticity) shows how much of that an input the LTVE does not
  have today would recover;
- **one future per action**: the same fit on ONE future per candidate (the noise a logged return carries) —
  what a log with randomised prices (an A/B-style exploration log) of the same size would teach;
- **one logged action per state**: the offline critic itself (``--models-dir``: the paper critic that
  ``bench_ltve_diagnostics`` trained on the same log).

Labels come from the simulator, which production does not have: the fitted networks are a diagnostic of the
problem, not a critic to ship. Every fit uses the paper critic's state encoding and network (TwinQ, 256x256,
the min of two heads), Adam at its learning rate, with early stopping on 10% of the training states (by the
error of the within-state differences).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench._report import command_line, markdown_table, write_section

TITLE = "What the LTVE's inputs allow: regression on randomised actions vs the offline critic (issue 20)"


LATENT = ("quality", "brand_strength", "listing_appeal")  # the simulator's per-SKU truth (sku_truth.parquet)


def review_scores(rows: pd.DataFrame, reviews: pd.DataFrame) -> np.ndarray:
    """(N, 2) per state row: the mean lexicon score of the SKU's reviews posted at or before the decision time
    (``aigp.market.text.read_review_sentiment``; 0 with none) and log1p of their count."""
    from aigp.ingest import reviews_seen
    from aigp.market.text import read_review_sentiment
    from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP

    reviews, first, end = reviews_seen(rows[ENTITY_KEY].to_numpy(), rows[EVENT_TIMESTAMP], reviews)
    text = reviews["text"].astype("category")
    lexicon = np.array([read_review_sentiment(str(t)) for t in text.cat.categories], dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(lexicon[text.cat.codes.to_numpy()])])
    count = end - first
    mean = np.where(count > 0, (cumulative[end] - cumulative[first]) / np.maximum(count, 1), 0.0)
    return np.stack([mean, np.log1p(count)], axis=1)


def fit_regression(states: torch.Tensor, actions: torch.Tensor, labels: torch.Tensor, config: Any,
                   *, max_steps: int, seed: int) -> tuple[Any, dict[str, float]]:
    """TwinQ fitted by MSE to ``labels`` (N, K) of ``actions`` (N, K) in ``states`` (N, D); states split 90/10,
    the step with the lowest validation error of the within-state differences (Q and label each centred on
    the state's mean over its candidates; checked every 200 steps) kept: pooled MSE is dominated by how states
    differ, and stops long before the action's effect is learned."""
    import copy

    from aigp.ltve.critic import TwinQ

    torch.manual_seed(seed)
    n, k = actions.shape
    order = torch.randperm(n)
    n_val = max(1, n // 10)
    val, train = order[:n_val], order[n_val:]
    net = TwinQ(states.shape[1], config.hidden_dims, config.action_scale, ensemble=2)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    flat_state = train.repeat_interleave(k)
    flat_cand = torch.arange(k).repeat(len(train))
    best, best_state, best_step, step = math.inf, copy.deepcopy(net.state_dict()), 0, 0
    generator = torch.Generator().manual_seed(seed)
    while step < max_steps:
        pick = torch.randint(0, len(flat_state), (config.batch_size,), generator=generator)
        s, c = flat_state[pick], flat_cand[pick]
        q = net(states[s], actions[s, c])
        loss = (q - labels[s, c]).square().mean(1).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        if step % 200 == 0 or step == max_steps:
            with torch.no_grad():  # the error of the within-state differences: what ranking depends on
                q = net.score(states[val], actions[val]).min(0).values
                v = ((q - q.mean(1, keepdim=True)) - (labels[val] - labels[val].mean(1, keepdim=True))
                     ).square().mean().item()
            if v < best:
                best, best_state, best_step = v, copy.deepcopy(net.state_dict()), step
            elif step - best_step >= 2000:
                break
    net.load_state_dict(best_state)
    return net, {"steps": float(step), "best_step": float(best_step), "val_within_state_mse": best}


def main() -> None:
    from aigp.ltve.artifact import load_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.diagnostics import ranking_diagnostics, truth_reliability
    from aigp.ltve.evaluate import EvaluationConfig, discounted_returns, evaluation_cohort, monte_carlo_branches
    from aigp.market.logs import open_logs
    from aigp.schema import ENTITY_KEY
    from bench.bench_ltve_diagnostics import branches_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/bench/market_eval"),
                        help="the market log bench_ltve_diagnostics simulated (and its held-out branches)")
    parser.add_argument("--models-dir", type=Path, required=True, help="bench_ltve_diagnostics' trained critics")
    parser.add_argument("--critic", default="paper", help="offline critic to compare (a folder of --models-dir)")
    parser.add_argument("--train-states", default="1000,4000,12000",
                        help="training states branched for the fits (comma-separated sizes; nested samples)")
    parser.add_argument("--train-rollouts", type=int, default=8, help="futures per training candidate")
    parser.add_argument("--mc-states", type=int, default=600, help="held-out states (as bench_ltve_diagnostics)")
    parser.add_argument("--mc-rollouts", type=int, default=16)
    parser.add_argument("--expert-rows", type=int, default=20_000)
    parser.add_argument("--min-action-gap", type=float, default=0.02)
    parser.add_argument("--max-steps", type=int, default=20_000, help="most updates of one fit")
    parser.add_argument("--latent", action=argparse.BooleanOptionalAction, default=True,
                        help="also fit with the SKU's hidden traits (quality, brand strength, listing appeal) added")
    parser.add_argument("--review-score", action=argparse.BooleanOptionalAction, default=True,
                        help="also fit with the review score (mean lexicon score of the reviews so far) added")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/ltve_ceiling"))
    parser.add_argument("--section", default="ltve_ceiling")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--from-results", type=Path, default=None,
                        help="write the section from an earlier run's results.json (nothing is re-run)")
    args = parser.parse_args()
    if args.from_results is not None:
        results = json.loads(args.from_results.read_text())
        ran = argparse.Namespace(**{k: results["args"][k] for k in ("mc_states", "mc_rollouts", "train_rollouts",
                                                                     "threads")})
        write_section(args.section, TITLE, report(results, ran), results["command"])
        return
    torch.set_num_threads(args.threads)
    started, started_cpu = time.perf_counter(), time.process_time()

    logs = open_logs(args.cache)
    market = logs.config
    held_path = branches_path(args.cache, market.n_skus, market.launch_days, market.seed, args.expert_rows,
                              args.mc_states, args.mc_rollouts)
    if not held_path.exists():
        raise SystemExit(f"{held_path}: run bench_ltve_diagnostics with --mc-states {args.mc_states} "
                         f"--mc-rollouts {args.mc_rollouts} first (its held-out branches are the test set)")
    held = pickle.loads(held_path.read_bytes())
    model = load_model(args.models_dir / args.critic)
    frame = training_frame_from_logs(args.cache)
    cfg = model.config

    # the held-out truth, scored with the critic's own reward
    returns = discounted_returns(model, held.rows, held.gmv, held.spend)
    truth, se = returns.mean(2), returns.std(2, ddof=1) / math.sqrt(returns.shape[2])
    test_states = model.encode(held.rows)
    test_actions = torch.as_tensor(held.actions, dtype=torch.float32)

    def diagnose(q: np.ndarray) -> dict[str, float]:
        return ranking_diagnostics(q, truth, se, held.actions, args.min_action_gap)

    rows: list[dict[str, Any]] = []
    offline = diagnose(model.q_values(held.rows, held.actions))
    rows.append({"fit": f"offline critic `{args.critic}` (the log: one logged action and one future per state)",
                 "states": float(model.metrics.get("train/transitions", math.nan)), "labels": "logged returns",
                 **offline})

    # training states: SKUs the critic trained on (launched before the cutoff), any behaviour, in stock
    held_out = set(evaluation_cohort(frame, model)[ENTITY_KEY].unique())
    horizon = model.reward_config.horizon_days
    pool = frame[~frame[ENTITY_KEY].isin(held_out) & (frame["days_since_launch"] < horizon)
                 & (frame["inventory"] > 0)]
    sizes = sorted(int(s) for s in args.train_states.split(","))
    t, c = time.perf_counter(), time.process_time()
    eval_cfg = EvaluationConfig(monte_carlo={"states": sizes[-1], "rollouts": args.train_rollouts,
                                             "seed": args.seed + 100})
    branches = monte_carlo_branches(pool, args.cache, eval_cfg, np.random.default_rng(args.seed + 1))
    train_returns = discounted_returns(model, branches.rows, branches.gmv, branches.spend)  # (N, K, R)
    branch_s = (time.perf_counter() - t, time.process_time() - c)
    print(f"[branches] {len(branches.rows)} training states x {branches.actions.shape[1]} candidates x "
          f"{args.train_rollouts} futures: {branch_s[0]:.0f} s", flush=True)
    states_all = model.encode(branches.rows)
    actions_all = torch.as_tensor(branches.actions, dtype=torch.float32)
    # the SKU's hidden traits (the simulator's truth, never in a log), standardised on the training states
    truth_traits = logs.read("sku_truth.parquet").set_index(ENTITY_KEY)[list(LATENT)]
    latent_train = truth_traits.loc[branches.rows[ENTITY_KEY].to_numpy()].to_numpy(np.float32)
    mu, sd = latent_train.mean(0), latent_train.std(0) + 1e-6
    latent_test = (truth_traits.loc[held.rows[ENTITY_KEY].to_numpy()].to_numpy(np.float32) - mu) / sd
    # the review score (observable: what reading every review so far tells), standardised the same way
    reviews = logs.read("reviews.parquet")
    score_train = review_scores(branches.rows, reviews).astype(np.float32)
    s_mu, s_sd = score_train.mean(0), score_train.std(0) + 1e-6
    score_test = (review_scores(held.rows, reviews).astype(np.float32) - s_mu) / s_sd
    inputs = {"state": (states_all, test_states),
              "state + hidden traits": (torch.cat([states_all, torch.from_numpy((latent_train - mu) / sd)], 1),
                                        torch.cat([test_states, torch.from_numpy(latent_test)], 1)),
              "state + review score": (torch.cat([states_all, torch.from_numpy((score_train - s_mu) / s_sd)], 1),
                                       torch.cat([test_states, torch.from_numpy(score_test)], 1))}
    label_sets = {"mean of the futures": train_returns.mean(2), "one future": train_returns[:, :, 0]}
    fits = [(size, "state", name) for size in sizes for name in label_sets]
    fits += [(size, "state + review score", "mean of the futures") for size in sizes if args.review_score]
    fits += [(size, "state + hidden traits", "mean of the futures") for size in sizes if args.latent]
    for size, input_name, label_name in fits:
        train_in, test_in = inputs[input_name]
        labels = label_sets[label_name]
        t, c = time.perf_counter(), time.process_time()
        net, info = fit_regression(train_in[:size], actions_all[:size],
                                   torch.as_tensor(labels[:size], dtype=torch.float32), cfg,
                                   max_steps=args.max_steps, seed=args.seed)
        with torch.no_grad():
            q = net.score(test_in, test_actions).min(0).values.numpy()
        row = {"fit": f"regression on randomised candidates: {input_name}, {label_name}",
               "states": float(size), "labels": label_name, "inputs": input_name, **diagnose(q), **info,
               "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
        rows.append(row)
        print(f"[{size} states, {input_name}, {label_name}] within-state rho {row['mc_spearman_within_state_gap']:.3f} "
              f"pairwise {row['mc_pairwise_accuracy_gap']:.3f} CDA {row['mc_cda_vs_truth']:.3f} "
              f"({info['best_step']:.0f} steps, {row['wall_s']:.0f} s)", flush=True)

    results = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
               "command": command_line("bench.bench_ltve_ceiling", args, parser),
               "noise_ceiling": truth_reliability(returns), "branch_wall_s": branch_s[0],
               "total_wall_s": time.perf_counter() - started, "total_cpu_s": time.process_time() - started_cpu}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    body = report(results, args)
    print(body)
    if not args.no_write:
        write_section(args.section, TITLE, body, results["command"])


def recovered(observable: list[dict[str, Any]], scored: list[dict[str, Any]],
              hidden: list[dict[str, Any]]) -> list[str]:
    """One line per size fitted with both: how much of the hidden traits' gain in within-state ρ (over the
    observable state, mean-of-futures labels) the review score recovers."""
    key = "mc_spearman_within_state_gap"

    def at(rows: list[dict[str, Any]], size: float) -> dict[str, Any] | None:
        return next((r for r in rows if r["states"] == size and r["labels"] == "mean of the futures"), None)

    out = []
    for size in sorted({r["states"] for r in scored}):
        base, score, traits = at(observable, size), at(scored, size), at(hidden, size)
        if base is None or score is None or traits is None or traits[key] <= base[key]:
            continue
        share = (score[key] - base[key]) / (traits[key] - base[key])
        way = (f"{100 * share:.0f}% of the way to" if share > 0
               else "no gain over the state alone, against")
        out.append(f"- At {size:,.0f} states the review score moves within-state ρ {base[key]:.3f} -> "
                   f"{score[key]:.3f}: {way} the hidden traits' {traits[key]:.3f}.")
    return out


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    rows = results["rows"]
    table = [{"fit": r["fit"], "training states": f"{r['states']:,.0f}",
              "within-state ρ (Δa)": r["mc_spearman_within_state_gap"],
              "pairwise acc. (Δa)": f"{100 * r['mc_pairwise_accuracy_gap']:.1f}%",
              "CDA vs truth": f"{100 * r['mc_cda_vs_truth']:.1f}%", "regret": r["mc_regret"],
              "pooled ρ": r["mc_spearman"], "updates (kept)": f"{r.get('best_step', math.nan):.0f}",
              "wall s": f"{r.get('wall_s', math.nan):.0f}"} for r in rows]
    observable = [r for r in rows[1:] if r["inputs"] == "state"]
    best = max(observable, key=lambda r: r["mc_spearman_within_state_gap"])
    hidden = [r for r in rows[1:] if r["inputs"] == "state + hidden traits"]
    scored = [r for r in rows[1:] if r["inputs"] == "state + review score"]
    offline = rows[0]
    means = sorted((r for r in observable if r["labels"] == "mean of the futures"), key=lambda r: r["states"])
    below = [r for r in means if r["mc_spearman_within_state_gap"] <= offline["mc_spearman_within_state_gap"]]
    above = [r for r in means if r["mc_spearman_within_state_gap"] > offline["mc_spearman_within_state_gap"]]
    matched = (f"The offline critic ({offline['mc_spearman_within_state_gap']:.3f}, from "
               f"{offline['states']:,.0f} logged transitions: one action and one future per state) ranks "
               + (f"above a regression on {below[-1]['states']:,.0f} states with every candidate tried"
                  if below else "below every regression here")
               + (f" and below one on {above[0]['states']:,.0f}" if above else "") + ".")
    cap = int(results["args"]["max_steps"])
    capped = [r for r in rows[1:] if r.get("best_step", 0) >= 0.9 * cap]
    capped_sizes = ", ".join(f"{size:,.0f}" for size in sorted({r["states"] for r in capped}))
    lines = [
        f"Held-out truth: the {args.mc_states} expert states x 9 candidates x {args.mc_rollouts} futures of "
        "`bench_ltve_diagnostics` (same log, same reward); its noise ceiling of within-state ρ is "
        f"{results['noise_ceiling']:.3f}. Training labels: candidates (logged, counterfactual ±0.1, 7-point grid "
        f"over A_safe) branched from states of the training SKUs (every behaviour policy, in stock), "
        f"{args.train_rollouts} futures each, continued by each SKU's logging policy; fitted to the mean of the "
        "futures or to one future; rows with the review score add the mean lexicon score of the SKU's reviews "
        "posted so far and their count (observable; the LTVE's state has only the count); rows with hidden traits "
        "add the SKU's quality, brand strength and listing appeal (the simulator's truth) to the inputs. The first "
        "row is the offline critic "
        "(`states` = its training transitions). Total "
        f"{results['total_wall_s']:.0f} s wall / {results['total_cpu_s']:.0f} s CPU, {args.threads} torch "
        "thread(s).",
        "",
        markdown_table(table),
        "",
        "- The best regression on the observable state reaches within-state ρ "
        f"{best['mc_spearman_within_state_gap']:.3f} "
        f"(pairwise {100 * best['mc_pairwise_accuracy_gap']:.1f}%, CDA vs truth "
        f"{100 * best['mc_cda_vs_truth']:.1f}%) from {best['states']:,.0f} states with {best['labels']} labels; "
        f"the offline critic {offline['mc_spearman_within_state_gap']:.3f}. The targets are 0.9 / 90% / 97.5%.",
        "- Within-state ρ by training states (observable state, mean of the futures / one future; with the review "
        "score; with the hidden traits): " + "; ".join(
            f"{size:,.0f}: " + " / ".join(f"{r['mc_spearman_within_state_gap']:.3f}" for r in observable
                                         if r["states"] == size)
            + "".join(f"; {r['mc_spearman_within_state_gap']:.3f}" for r in scored if r["states"] == size)
            + "".join(f"; {r['mc_spearman_within_state_gap']:.3f}" for r in hidden if r["states"] == size)
            for size in sorted({r["states"] for r in observable})) + ".",
        f"- {matched}",
        *recovered(observable, scored, hidden),
        *([f"- The fits on {capped_sizes} states kept an update "
           f"within 10% of the cap ({cap:,} updates): they were still improving, so their ρ is a lower bound."]
          if capped else []),
        "- Fits to the mean of the futures bound what the observable state allows at that many states (no label "
        "noise to speak of); fits to one future are what a log with randomised prices of that many states would "
        "teach (one noisy return per action, as a log has, but every action tried); fits with the hidden traits "
        "show how much of the rest the state cannot show.",
        "- Labels from the simulator: a diagnostic, not a critic to ship.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
