"""Teachers: the built-in knowledge-base teacher (embedded default) and a teacher behind an endpoint.

:class:`KnowledgeBaseTeacher` reads the SAME prompt a model reads (``aigp.llm.prompt.parse_prompt``: the
printed numbers, the knowledge-base lines, the review digest; never simulator state), reasons step by step
over :data:`aigp.llm.prompt.FACTORS` citing every number as ``name = value``, and ends in the JSON action.
Its policy is an operations playbook written down:

1. milestone pace picks an ROI margin: behind pace spends more of the ROI budget on GMV, well ahead banks ROI;
2. ROI budget: the ROI the remaining days may run at so the 14-day ROI ends at ``roi_target x margin``
   (``aigp.llm.diagnosis.roi_for_rest``), turned into the deepest discount that ROI allows with the
   knowledge base's ROI arithmetic, ``d = r (1 + traffic_share) / (1 + r)``; on launch day the comparable
   products' usual discount (knowledge base) anchors it;
3. small adjustments: weak click-through with ROI headroom (deepen), positive reviews (hold price),
   platform promotion days (deepen), price far from comparable products, and a stock floor when the SKU
   would sell out before day 14;
4. move toward the target by at most ``max_step`` a day (reference-price effects punish big swings).

Sampling noise: with temperature > 0 the teacher's judgement (its ROI margin) jitters, and with
probability ``defect_rate x temperature`` it makes one reasoning mistake of the kinds an LLM makes
(``aigp.distillation.defects.TEACHER_DEFECTS``); the judge is there to catch them.

:class:`TeacherPolicy` runs any teacher as a simulator policy: prompt -> teacher -> Ψ -> action.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import Field

from aigp.action import MAX_DISCOUNT, MIN_DISCOUNT
from aigp.config import StrictConfig
from aigp.distillation import defects
from aigp.llm.diagnosis import (
    SIGNAL_DECIMALS,
    Signals,
    compute_signals,
    fmt,
    pace_word,
    review_label,
    review_score,
    roi_for_rest,
)
from aigp.llm.parser import parse_action
from aigp.llm.prompt import (
    FACTOR_TITLES,
    Prompt,
    PromptConfig,
    build_prompt,
    required_factors,
)
from aigp.llm.prompt_reader import PromptFacts, parse_prompt

PromptLike = Prompt | str | Sequence[Mapping[str, str]]

WEAK_CTR = 0.8
PRICE_HIGH, PRICE_LOW = 1.15, 0.85  # price_position beyond these is far from comparable products
ROI_RULE = "rule-roi-arithmetic"  # the knowledge-base rule the ROI budget needs


class TeacherRules(StrictConfig):
    """The playbook's constants (tuned on a training cohort of the simulator, never on the benchmark one)."""

    roi_margin: float = Field(1.10, gt=0, description="ROI goal = roi_target x margin when on pace")
    push_margin: float = Field(1.03, gt=0, description="margin when behind pace: spend ROI headroom on GMV")
    ahead_margin: float = Field(1.20, gt=0, description="margin when well ahead of pace: bank ROI")
    behind_pace: float = Field(1.0, gt=0, description="milestone_pace below this counts as behind")
    ahead_pace: float = Field(1.4, gt=0, description="milestone_pace above this counts as well ahead")
    future_decay: float = Field(0.90, gt=0, le=1.5, description="share of the run rate expected over the days left")
    min_roi_factor: float = Field(0.8, gt=0, description="the remaining days never plan below this x roi_target")
    max_roi_allowed: float = Field(50.0, gt=0, description="cap of the ROI the remaining days plan for")
    max_step: float = Field(0.05, gt=0, le=0.2, description="largest daily move")
    review_adjust: float = Field(0.02, description="positive reviews: hold this much more price")
    promotion_adjust: float = Field(-0.02, description="promotion day: extra discount")
    weak_ctr_adjust: float = Field(-0.01, description="weak click-through with ROI headroom: extra discount")
    competitor_adjust: float = Field(0.01, ge=0, description="move toward comparable products' price")
    default_usual_discount: float = Field(0.85, ge=0.5, le=1.0, description="launch anchor without a knowledge base")
    default_traffic_share: float = Field(0.05, ge=0, description="traffic share without data or knowledge base")
    # Without the knowledge base's ROI arithmetic the teacher steers by the sign of the gaps (common sense):
    lean_roi_below: float = Field(0.03, description="ROI below target: raise the price")
    lean_behind: float = Field(-0.03, description="behind pace with ROI on target: deepen")
    lean_ahead: float = Field(0.02, description="well ahead of pace: raise")


class TeacherConfig(StrictConfig):
    name: str = Field("aigp-kb-teacher", description="recorded as the teacher in the distillation set")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="default sampling temperature")
    seed: int = Field(0, ge=0)
    defect_rate: float = Field(0.25, ge=0.0, le=1.0, description="P(one reasoning defect) per unit temperature")
    max_defect_probability: float = Field(0.6, ge=0.0, le=1.0)
    judgement_noise: float = Field(0.03, ge=0.0, description="sd of the ROI-margin jitter per unit temperature")
    rules: TeacherRules = Field(default_factory=TeacherRules)


@dataclass(frozen=True)
class Analysis:
    """Every number the teacher's reasoning states, and the decision."""

    prev_discount: float
    prev_text: str
    days_left: int
    signals: Signals
    pace: float | None
    margin: float
    roi_goal: float
    future_gmv: float | None
    roi_allowed: float
    traffic_share: float
    traffic_source: str  # "3-day data", "[kb:<id>]" or "default"
    roi_rule: bool  # the prompt's knowledge base states the ROI arithmetic
    roi_lean: float | None  # without it: the step the ROI gap and the pace suggest
    base_discount: float
    usual_discount: float | None
    adjustments: dict[str, float]
    stock_floor: float | None
    review_score: float | None
    review_shown: int
    target_discount: float
    discount_change: float
    new_discount: float
    kb_used: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TeacherResponse:
    text: str
    analysis: Analysis | None
    defect: str | None = None  # the sampling defect planted in this response, for analysis only


class Teacher(Protocol):
    name: str

    def respond(self, prompt: PromptLike, *, temperature: float | None = None, seed: int | None = None,
                sample_index: int = 0) -> TeacherResponse: ...


def format_discount(value: float) -> str:
    """A discount with 2 to 4 decimals (as the prompt prints discounts)."""
    text = f"{value:.4f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def format_change(value: float) -> str:
    return f"{value:+.2f}" if abs(value) >= 0.005 else "+0.00"


def _knowledge_fact(facts: PromptFacts, name: str) -> tuple[str, str] | None:
    """(kb id, value) of the first knowledge-base entry in the prompt that states ``name``."""
    for entry_id, entry_facts in facts.knowledge.items():
        if name in entry_facts:
            return entry_id, entry_facts[name]
    return None


class KnowledgeBaseTeacher:
    """The built-in teacher (see the module docstring)."""

    def __init__(self, config: TeacherConfig | None = None):
        self.config = config or TeacherConfig()
        self.rules = self.config.rules
        self.name = self.config.name

    # ------------------------------------------------------------------------------------------------
    def analyse(self, facts: PromptFacts, rng: np.random.Generator | None = None, temperature: float = 0.0) -> Analysis:
        """The decision and every number behind it, from what the prompt states."""
        r = self.rules
        n = facts.numbers
        prev = n.get("prev_discount")
        target_roi = n.get("roi_target")
        if prev is None or target_roi is None or not MIN_DISCOUNT <= prev <= MAX_DISCOUNT:
            raise ValueError("the prompt lacks prev_discount or roi_target (decision-critical): cannot decide")
        prev_text = facts.fields["prev_discount"]
        signals = compute_signals(n)
        age = n.get("days_since_launch", 0.0)
        launch = age <= 0 or signals.gmv_run_rate is None
        pace = signals.milestone_pace

        margin = r.roi_margin
        if not launch and pace is not None:
            margin = (r.push_margin if pace < r.behind_pace else
                      r.ahead_margin if pace > r.ahead_pace else r.roi_margin)
        if rng is not None and temperature > 0:
            margin += float(rng.normal(0.0, self.config.judgement_noise * temperature))
        margin = round(max(margin, 0.5), 2)
        roi_goal = round(target_roi * margin, 2)

        kb_used: list[str] = []
        share = signals.traffic_share
        source = "3-day data"
        if share is None:
            fact = _knowledge_fact(facts, "traffic_share")
            if fact is not None:
                share, source = float(fact[1]), f"[kb:{fact[0]}]"
                kb_used.append(fact[0])
            else:
                share, source = r.default_traffic_share, "default"
        share = round(share, 3)

        roi_rule = ROI_RULE in facts.knowledge
        future, lean = None, None
        if launch:
            roi_allowed = roi_goal
        elif roi_rule:
            assert signals.gmv_run_rate is not None
            future = round(signals.gmv_run_rate * signals.days_left * r.future_decay, 1)
            rest = roi_for_rest(n.get("cum_gmv", 0.0), n.get("cum_spend", 0.0), future, roi_goal)
            roi_allowed = r.max_roi_allowed if rest is None else min(max(rest, r.min_roi_factor * target_roi),
                                                                     r.max_roi_allowed)
        else:
            roi_allowed = roi_goal
            cum_roi = n.get("cum_roi", 0.0)
            lean = (r.lean_roi_below if cum_roi < target_roi else
                    r.lean_behind if pace is not None and pace < r.behind_pace else
                    r.lean_ahead if pace is not None and pace > r.ahead_pace else 0.0)
        roi_allowed = round(roi_allowed, 2)
        if roi_rule or launch:
            base = round(roi_allowed * (1.0 + share) / (1.0 + roi_allowed), 2) if roi_rule else 0.0
        else:
            assert lean is not None
            base = round(min(max(prev + lean, MIN_DISCOUNT), MAX_DISCOUNT), 2)
        if roi_rule and ROI_RULE not in kb_used:
            kb_used.append(ROI_RULE)
        usual = None
        if launch:
            fact = _knowledge_fact(facts, "usual_discount")
            if fact is not None:
                usual = float(fact[1])
                if fact[0] not in kb_used:
                    kb_used.append(fact[0])
            else:
                usual = r.default_usual_discount
            base = round(max(base, usual), 2)

        adjustments = {k: 0.0 for k in ("traffic", "reviews", "calendar", "competitors")}
        if not launch and signals.ctr_vs_category is not None and signals.ctr_vs_category < WEAK_CTR \
                and n.get("cum_roi", 0.0) >= roi_goal:
            adjustments["traffic"] = r.weak_ctr_adjust
        score = review_score(facts.reviews)
        if review_label(score, len(facts.reviews)) == "positive":
            adjustments["reviews"] = r.review_adjust
        if n.get("is_promotion"):
            adjustments["calendar"] = r.promotion_adjust
        position = n.get("price_position")
        if position is not None and position > PRICE_HIGH:
            adjustments["competitors"] = -r.competitor_adjust
        elif position is not None and 0 < position < PRICE_LOW:
            adjustments["competitors"] = r.competitor_adjust

        target = round(min(max(base + sum(adjustments.values()), MIN_DISCOUNT), MAX_DISCOUNT), 2)
        floor = None
        if signals.stock_cover_days is not None and signals.stock_cover_days < signals.days_left:
            floor = round(min(prev + r.max_step, MAX_DISCOUNT), 4)
            target = round(max(target, floor), 4)
        change = round(min(max(target - prev, -r.max_step), r.max_step), 2)
        if abs(change) < 0.01:
            change = 0.0
        new = round(min(max(prev + change, MIN_DISCOUNT), MAX_DISCOUNT), 4)
        change = round(new - prev, 4)
        for entry_id in facts.knowledge:
            if entry_id not in kb_used:
                kb_used.append(entry_id)
        return Analysis(
            prev_discount=prev, prev_text=prev_text, days_left=signals.days_left, signals=signals, pace=pace,
            margin=margin, roi_goal=roi_goal, future_gmv=future, roi_allowed=roi_allowed, traffic_share=share,
            traffic_source=source, roi_rule=roi_rule, roi_lean=lean, base_discount=base, usual_discount=usual,
            adjustments=adjustments,
            stock_floor=floor, review_score=score, review_shown=len(facts.reviews), target_discount=target,
            discount_change=change, new_discount=new, kb_used=kb_used,
        )

    # ------------------------------------------------------------------------------------------------
    def respond(self, prompt: PromptLike, *, temperature: float | None = None, seed: int | None = None,
                sample_index: int = 0) -> TeacherResponse:
        facts = parse_prompt(prompt)
        temp = self.config.temperature if temperature is None else temperature
        rng = np.random.default_rng(_seed(self.config.seed, seed, facts, sample_index))
        try:
            analysis = self.analyse(facts, rng, temp)
        except ValueError as exc:
            hold = '{"discount_change": 0.00}'
            return TeacherResponse(f"Decision: hold, {exc}.\n{hold}" if not facts.act_only else hold, None)
        action = action_json(analysis)
        if facts.act_only:
            return TeacherResponse(action, analysis)
        text = render_reasoning(analysis, facts, self.rules) + "\n" + action
        defect = None
        p_defect = min(self.config.defect_rate * temp, self.config.max_defect_probability)
        if p_defect > 0 and rng.random() < p_defect:
            kind = defects.TEACHER_DEFECTS[int(rng.integers(len(defects.TEACHER_DEFECTS)))]
            planted = defects.plant(kind, text, facts, rng)
            if planted is not None:
                text, defect = planted, kind
        return TeacherResponse(text, analysis, defect)


def _seed(base: int, request: int | None, facts: PromptFacts, sample_index: int) -> list[int]:
    """Seed material of one response: the teacher's seed, the request's, the prompt's content, the sample."""
    digest = hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(facts.fields.items())).encode()).digest()
    return [base, (request or 0) & 0x7FFFFFFF, int.from_bytes(digest[:4], "little"), sample_index]


def action_json(analysis: Analysis) -> str:
    return (f'{{"discount_change": {analysis.discount_change:.2f}, '
            f'"new_discount": {format_discount(analysis.new_discount)}}}')


def _kb_states(facts: PromptFacts) -> bool:
    return any("usual_discount" in entry for entry in facts.knowledge.values())


def _sig(signals: Signals, name: str) -> str:
    return f"{name} = {fmt(getattr(signals, name), SIGNAL_DECIMALS[name])}"


def render_reasoning(a: Analysis, facts: PromptFacts, rules: TeacherRules) -> str:
    """The numbered reasoning lines (without the JSON)."""
    s, f = a.signals, facts.fields
    cite = lambda name: f"{name} = {f.get(name, 'n/a')}"  # noqa: E731 - a local shorthand
    launch = a.signals.gmv_run_rate is None or facts.numbers.get("days_since_launch", 0.0) <= 0
    lines: dict[str, str] = {}

    if launch:
        margin = f"; I keep the standard margin = {a.margin:.2f}" if a.roi_rule else ""
        lines["milestone"] = (f"launch day, no sales yet: {cite('gmv_tier1')} is needed in {_sig(s, 'days_left')} days "
                              f"({_sig(s, 'gmv_needed_per_day')}){margin}.")
    else:
        pace = a.pace
        why = ("so I spend more of the ROI budget on GMV" if pace is not None and pace < rules.behind_pace else
               "well ahead, so I bank ROI" if pace is not None and pace > rules.ahead_pace else
               "so I keep the standard")
        margin = f"; {why}: margin = {a.margin:.2f}" if a.roi_rule else ""
        lines["milestone"] = (f"{cite('cum_gmv')} of {cite('gmv_tier1')} with {_sig(s, 'days_left')}; "
                              f"{_sig(s, 'gmv_run_rate')} gives {_sig(s, 'milestone_pace')}, "
                              f"{pace_word(pace)}{margin}.")

    goal = f"roi_goal = {a.roi_goal:.2f} (roi_target x margin)"
    share = f"traffic_share = {a.traffic_share:.3f} ({a.traffic_source})"
    usual_source = "" if _kb_states(facts) else " (default)"
    if launch and a.roi_rule:
        anchor = (f"; comparable products sell at usual_discount = {a.usual_discount:.2f}{usual_source}, so "
                  f"base_discount = {a.base_discount:.2f}")
        lines["roi"] = (f"no spend yet, {cite('roi_target')}; {goal}; with {share} that allows a discount down to "
                        f"{a.roi_goal * (1 + a.traffic_share) / (1 + a.roi_goal):.2f}{anchor}.")
    elif launch:
        lines["roi"] = (f"no spend yet, {cite('roi_target')}; with no ROI rule in the knowledge base I start where "
                        f"comparable products sell, usual_discount = {a.usual_discount:.2f}{usual_source}: "
                        f"base_discount = {a.base_discount:.2f}.")
    else:
        cum_roi, target = facts.numbers.get("cum_roi", 0.0), facts.numbers.get("roi_target", 0.0)
        side = "above" if cum_roi >= target else "below"
        if a.roi_rule:
            lines["roi"] = (f"{cite('cum_roi')} is {side} {cite('roi_target')}; {goal}. With future_gmv = "
                            f"{a.future_gmv:.1f} (gmv_run_rate x days_left x decay, decay = {rules.future_decay:.2f}) "
                            f"the remaining days may run at roi_allowed = {a.roi_allowed:.2f}; with {share} that "
                            f"allows base_discount = {a.base_discount:.2f} (roi_allowed x (1 + traffic_share) / "
                            f"(1 + roi_allowed)).")
        else:
            lines["roi"] = (f"{cite('cum_roi')} is {side} {cite('roi_target')}; with no ROI rule in the knowledge "
                            f"base I steer by the ROI gap and the pace: roi_lean = {format_change(a.roi_lean or 0.0)}, "
                            f"base_discount = {a.base_discount:.2f} (prev_discount + roi_lean).")

    adj = a.adjustments
    if launch:
        lines["traffic"] = f"no clicks yet ({cite('category_ctr')}, {cite('category_cvr')}); adjust = +0.00."
    else:
        lines["traffic"] = (f"{_sig(s, 'ctr_vs_category')} and {_sig(s, 'cvr_vs_category')}"
                            + (" (weak click-through while ROI has headroom: the discount badge lifts it)"
                               if adj["traffic"] < 0 else "") + f"; adjust = {format_change(adj['traffic'])}.")
    if s.stock_cover_days is None:
        lines["stock"] = f"{cite('inventory')} units, no recent orders to run it down; no stock limit."
    elif a.stock_floor is not None:
        lines["stock"] = (f"{_sig(s, 'stock_cover_days')} is below {_sig(s, 'days_left')}: the SKU sells out before "
                          f"day 14, so the price must rise: stock_floor = {format_discount(a.stock_floor)}.")
    else:
        lines["stock"] = f"{_sig(s, 'stock_cover_days')} is above {_sig(s, 'days_left')}; no stock limit."
    label = review_label(a.review_score, a.review_shown)
    if a.review_shown == 0:
        lines["reviews"] = f"no reviews yet ({cite('review_count')}); adjust = +0.00."
    else:
        effect = {"positive": "shoppers are less price sensitive, so I hold more price",
                  "negative": "a deeper discount does not fix a product problem, so no extra discount",
                  "mixed": "no clear signal", "too few to judge": "too few to judge"}[label]
        lines["reviews"] = (f"{a.review_shown} shown of {cite('review_count')}, review_score = {a.review_score:.2f} "
                            f"({label}): {effect}; adjust = {format_change(adj['reviews'])}.")
    season = "strong" if any(v.get("season_strength") == "strong" for v in facts.knowledge.values()) else "mild"
    calendar = f"{cite('is_promotion')}, {cite('in_season')}"
    if facts.numbers.get("is_promotion"):
        calendar += " (promotion day: shoppers are more price sensitive, a small extra discount converts)"
    elif facts.numbers.get("in_season"):
        calendar += f" ({season} season: demand rises by itself, no deeper cut)"
    lines["calendar"] = f"{calendar}; adjust = {format_change(adj['calendar'])}."
    position = facts.numbers.get("price_position")
    where = ("above" if position is not None and position > PRICE_HIGH else
             "below" if position is not None and position < PRICE_LOW else "in line with")
    lines["competitors"] = (f"{cite('price_position')} ({cite('competitor_median_price')}): {where} comparable "
                            f"products; adjust = {format_change(adj['competitors'])}.")
    if facts.knowledge:
        used = []
        for entry_id in a.kb_used:
            entry_facts = facts.knowledge.get(entry_id, {})
            stated = ", ".join(f"{k} = {v}" for k, v in entry_facts.items() if k in ("usual_discount", "traffic_share",
                                                                                     "season_strength"))
            used.append(f"[kb:{entry_id}]" + (f" ({stated})" if stated else ""))
        lines["knowledge"] = "applied " + "; ".join(used) + "."

    total = sum(adj.values())
    direction = ("deepen the discount" if a.discount_change < 0 else
                 "raise the price" if a.discount_change > 0 else "hold the price")
    floor = f", at least stock_floor = {format_discount(a.stock_floor)}" if a.stock_floor is not None else ""
    decision = (f"target_discount = {format_discount(a.target_discount)} (base_discount + adjustments "
                f"{format_change(total)}{floor}); from prev_discount = {a.prev_text} I {direction}: "
                f"discount_change = {a.discount_change:.2f} (max_step = {rules.max_step:.2f}), "
                f"new_discount = {format_discount(a.new_discount)}.")

    factors = list(required_factors(bool(facts.knowledge)))
    out = [f"{i}. {FACTOR_TITLES[k]}: {lines[k]}" for i, k in enumerate(factors, 1)]
    out.append(f"{len(factors) + 1}. {FACTOR_TITLES['decision']}: {decision}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# the teacher as a simulator policy


class TeacherPolicy:
    """Any teacher as an ``aigp.market.observation.Policy``: prompt -> teacher -> Ψ -> discount change."""

    requires_text = True
    requires_truth = False

    def __init__(self, teacher: Teacher | None = None, *, prompt_config: PromptConfig | None = None,
                 temperature: float = 0.0, name: str = "kb_teacher"):
        self.teacher = teacher or KnowledgeBaseTeacher()
        self.prompt_config = prompt_config or PromptConfig()
        self.temperature = temperature
        self.name = name
        self.fallbacks = 0
        self.projected = 0
        self.decisions = 0

    def act(self, obs: object) -> np.ndarray:
        frame = obs.with_text_columns()  # type: ignore[attr-defined]
        out = np.zeros(len(frame))
        for i, row in enumerate(frame.to_dict("records")):
            prompt = build_prompt(row, self.prompt_config)
            response = self.teacher.respond(prompt, temperature=self.temperature, seed=int(row.get("sku_id", 0)))
            parsed = parse_action(response.text, float(row["prev_discount"]))
            out[i] = parsed.discount_change
            self.fallbacks += parsed.fallback
            self.projected += parsed.projected
        self.decisions += len(frame)
        return out

    def __repr__(self) -> str:
        return f"TeacherPolicy(name={self.name!r}, teacher={getattr(self.teacher, 'name', '?')!r})"


def teacher_backend(teacher: Teacher | None = None):
    """A backend for :class:`aigp.openai_compat.local_endpoint.LocalOpenAIServer` that answers with ``teacher``
    (the request's temperature and seed drive its sampling noise; ``n`` samples per request)."""
    chosen = teacher or KnowledgeBaseTeacher()

    def backend(messages: list[dict[str, str]], params: object) -> list[str]:
        n = int(getattr(params, "n", 1))
        return [chosen.respond(messages, temperature=getattr(params, "temperature", None),
                               seed=getattr(params, "seed", None), sample_index=i).text for i in range(n)]

    return backend
