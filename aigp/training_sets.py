"""The training pipeline's data split: one point-in-time window of decisions, cut by SKU launch date into
the training SKUs (LTVE, teacher prompts, SFT/DPO prompts) and the held-out cohort the offline gate
evaluates on. No row of a held-out SKU ever reaches a training step, the LTVE included.

Why by launch date and not by decision date: the expert set and the realised returns need each SKU's whole
14-day episode, and a SKU's early days must not train a model that is then judged on its later days.

Input: a frame with the decision labels and the ``llm_prompt`` features (what
``AigpFeatureStore.training_set(start, end, "llm_prompt")`` returns; that service is a superset of
``ltve_training``, so one point-in-time join serves both) or, without a feature store,
:func:`aigp.gate.heldout_from_logs` on a market log directory.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from pydantic import Field

from aigp.config import StrictConfig
from aigp.schema import DATE, ENTITY_KEY, EVENT_TIMESTAMP


class SplitConfig(StrictConfig):
    holdout_from: dt.date | None = Field(None, description="first launch day of the held-out cohort; None: the "
                                         "latest `holdout_share` of SKUs by launch")
    holdout_share: float = Field(0.2, gt=0, lt=1, description="share of SKUs (latest launches) held out")
    max_prompt_rows: int = Field(0, ge=0, description="cap on the prompt rows kept (seeded sample; 0 = all)")
    seed: int = Field(0, ge=0)


@dataclass(frozen=True)
class TrainingSets:
    training: pd.DataFrame  # rows of the training SKUs: LTVE training set and prompt source
    prompts: pd.DataFrame  # prompt rows of the training SKUs (possibly sampled)
    heldout: pd.DataFrame  # every row of the held-out SKUs
    holdout_from: dt.date

    def metrics(self) -> dict[str, float]:
        return {"training_rows": float(len(self.training)), "training_skus": float(self.training[ENTITY_KEY].nunique()),
                "prompt_rows": float(len(self.prompts)), "heldout_rows": float(len(self.heldout)),
                "heldout_skus": float(self.heldout[ENTITY_KEY].nunique())}


def with_date(frame: pd.DataFrame) -> pd.DataFrame:
    """``date`` (the day priced) from ``event_timestamp`` when the frame has none (Feast training sets do)."""
    if DATE in frame.columns:
        return frame
    return frame.assign(**{DATE: pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).dt.date})


def holdout_launch_day(frame: pd.DataFrame, share: float) -> dt.date:
    """The launch day from which the latest ``share`` of the frame's SKUs launched."""
    from aigp.ltve.dataset import launch_dates

    per_sku = launch_dates(frame).groupby(frame[ENTITY_KEY].to_numpy()).min().sort_values(kind="stable")
    if per_sku.empty:
        raise ValueError("no rows to split")
    return per_sku.iloc[min(len(per_sku) - 1, int(len(per_sku) * (1 - share)))].date()


def split_training_sets(frame: pd.DataFrame, config: SplitConfig | None = None) -> TrainingSets:
    """Cut ``frame`` by launch date into training and held-out SKUs (see the module docstring)."""
    from aigp.gate import select_launch_window

    config = config or SplitConfig()
    missing = [c for c in (ENTITY_KEY, "days_since_launch", "prev_discount", "discount_change", "out_gmv")
               if c not in frame.columns]
    if missing:
        raise ValueError(f"training frame lacks column(s) {missing}: expected the llm_prompt training set")
    frame = with_date(frame)
    cutoff = config.holdout_from or holdout_launch_day(frame, config.holdout_share)
    training = select_launch_window(frame, None, cutoff)
    heldout = select_launch_window(frame, cutoff, None)
    if training.empty or heldout.empty:
        raise ValueError(f"holdout_from={cutoff} leaves {len(training)} training and {len(heldout)} held-out rows; "
                         "choose a launch day inside the window")
    prompts = training
    if config.max_prompt_rows and len(prompts) > config.max_prompt_rows:
        prompts = prompts.sample(n=config.max_prompt_rows, random_state=config.seed).sort_index()
    return TrainingSets(training=training, prompts=prompts.reset_index(drop=True), heldout=heldout,
                        holdout_from=cutoff)


def base_model_corpus(rows: pd.DataFrame, *, n: int = 300, seed: int = 0) -> list[str]:
    """The tokenizer corpus of a base model: system and user prompts (full and [ACT_ONLY]) of ``n`` sampled
    rows and the built-in teacher's answers, so the vocabulary covers what SFT and DPO will feed it."""
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.prompt import PromptConfig, build_prompt

    sample = rows.sample(n=min(n, len(rows)), random_state=seed) if len(rows) > n else rows
    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in sample.to_dict("records"):
        for cfg in (PromptConfig(), PromptConfig(act_only=True)):
            prompt = build_prompt(row, cfg)
            corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    return corpus


def date_window(frame: pd.DataFrame) -> tuple[str, str]:
    """First and last day priced in ``frame`` (ISO dates)."""
    days = pd.to_datetime(with_date(frame)[DATE])
    return str(days.min().date()), str(days.max().date())

