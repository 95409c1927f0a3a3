"""Product descriptions and customer reviews: the only window onto a SKU's latent quality.

A review's sentiment is drawn around the SKU's quality and rendered into varied text. A reader that
scores the text with a small lexicon (:func:`read_review_sentiment`) recovers each review's sentiment
level exactly, so the signal is in the words, not in a hidden column; how much it says about quality
depends on how many reviews have arrived (the noise shrinks with their number), which is the point.

Reviews are identified by integer codes (level, phrasing, aspect) and rendered from per-category tables,
so text costs a table lookup even for millions of reviews.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from aigp.market.categories import Category

# Sentiment levels and the cut points on the drawn sentiment (in units of quality's standard deviation).
LEVEL_SCORES = (-2, -1, 0, 1, 2)
LEVEL_CUTS = (-1.2, -0.4, 0.4, 1.2)

POSITIVE_WORDS = {"great": 1, "love": 1, "excellent": 2, "perfect": 2, "good": 1, "happy": 1, "nice": 1,
                  "recommend": 1, "solid": 1, "superb": 2}
NEGATIVE_WORDS = {"bad": -1, "poor": -1, "terrible": -2, "awful": -2, "disappointed": -1, "cheap": -1,
                  "broke": -1, "returning": -1, "flimsy": -1, "worst": -2}
LEXICON = {**POSITIVE_WORDS, **NEGATIVE_WORDS}

# Phrasings per level; every phrasing's lexicon words sum exactly to the level's score.
_PHRASINGS: tuple[tuple[str, ...], ...] = (
    ("Terrible {aspect}, the {noun} is not what was shown.",
     "Awful {aspect}. Would not buy this {noun} again.",
     "The {aspect} is bad and the {noun} feels flimsy.",
     "Worst {noun} I have ordered, the {aspect} fell apart."),
    ("The {aspect} is poor for the price.",
     "A bit disappointed with the {aspect} of this {noun}.",
     "The {noun} looks cheap, especially the {aspect}.",
     "Returning it, the {aspect} did not hold up."),
    ("The {aspect} is nice but the packaging was poor.",
     "Okay {noun}. The {aspect} is as described.",
     "Good {aspect}, bad delivery time, average {noun} overall.",
     "It is a {noun}. The {aspect} is fine, nothing special."),
    ("Good {noun}, the {aspect} is as expected.",
     "Happy with the {aspect}, arrived on time.",
     "Solid {noun} for daily use, the {aspect} holds up.",
     "Would recommend, the {aspect} matches the photos."),
    ("Excellent {aspect}, this {noun} is better than expected.",
     "Love it! Great {aspect} and the {noun} feels premium.",
     "Perfect {noun}, the {aspect} is spot on.",
     "Superb {aspect}, I already ordered a second {noun}."),
)
N_VARIANTS = 4
MAX_ASPECTS = 4

_DESCRIPTION_DETAIL = (
    "Trendy design at an unbeatable price, limited stock.",
    "Made with carefully selected materials and checked before shipping.",
    "Certified materials with a tested {aspect}; 180-day quality guarantee and free returns.",
)
_USES = ("everyday use", "gifting", "home and travel", "the new season", "work and weekends")

_WORD = re.compile(r"[a-z]+")


def sentiment_level(sentiment: np.ndarray) -> np.ndarray:
    """Bin drawn sentiments into the five levels 0..4."""
    return np.searchsorted(np.asarray(LEVEL_CUTS), sentiment).astype(np.int64)


def review_codes(level: np.ndarray, variant_u: np.ndarray, aspect_u: np.ndarray) -> np.ndarray:
    variant = np.minimum((variant_u * N_VARIANTS).astype(np.int64), N_VARIANTS - 1)
    aspect = np.minimum((aspect_u * MAX_ASPECTS).astype(np.int64), MAX_ASPECTS - 1)
    return (level * N_VARIANTS + variant) * MAX_ASPECTS + aspect


def code_level(code: np.ndarray) -> np.ndarray:
    return np.asarray(code) // (N_VARIANTS * MAX_ASPECTS)


def code_score(code: np.ndarray) -> np.ndarray:
    """The lexicon score a reader gets from the review with this code."""
    return np.asarray(LEVEL_SCORES)[code_level(code)]


@lru_cache(maxsize=64)
def review_table(category: Category, noun_index: int) -> np.ndarray:
    """All renderable reviews of one category/noun, indexed by code."""
    noun = category.nouns[noun_index % len(category.nouns)]
    rows = []
    for level in range(len(LEVEL_SCORES)):
        for variant in range(N_VARIANTS):
            for aspect_idx in range(MAX_ASPECTS):
                aspect = category.aspects[aspect_idx % len(category.aspects)]
                rows.append(_PHRASINGS[level][variant].format(aspect=aspect, noun=noun))
    return np.array(rows, dtype=object)


def render_reviews(category: Category, noun_index: int, codes: np.ndarray) -> list[str]:
    return list(review_table(category, noun_index)[np.asarray(codes, dtype=np.int64)])


N_NOUN_SLOTS = 16  # SKUs draw a noun slot in [0, 16); slots wrap around a category's nouns
CODES_PER_TABLE = len(LEVEL_SCORES) * N_VARIANTS * MAX_ASPECTS


def all_reviews(categories: tuple[Category, ...]) -> np.ndarray:
    """Every renderable review of a market, indexed by ``review_index(category, noun, code)``."""
    return np.concatenate([review_table(c, n) for c in categories for n in range(N_NOUN_SLOTS)])


def review_index(category: np.ndarray, noun: np.ndarray, code: np.ndarray) -> np.ndarray:
    return (np.asarray(category) * N_NOUN_SLOTS + np.asarray(noun)) * CODES_PER_TABLE + np.asarray(code)


def read_review_sentiment(text: str) -> int:
    """What a reader concludes from one review: the lexicon score of its words, clipped to [-2, 2]."""
    score = sum(LEXICON.get(w, 0) for w in _WORD.findall(text.lower()))
    return max(-2, min(2, score))


def review_digest(reviews_newest_first: list[str], total: int) -> str:
    """The review digest a prompt shows: the newest reviews, with the count they are drawn from."""
    if total <= 0 or not reviews_newest_first:
        return "No reviews yet."
    shown = len(reviews_newest_first)
    lines = [f"{shown} most recent of {total} review(s):"]
    lines.extend(f"- {text}" for text in reviews_newest_first)
    return "\n".join(lines)


def describe(category: Category, brand: str, noun_index: int, detail_level: int, use_index: int) -> str:
    noun = category.nouns[noun_index % len(category.nouns)]
    aspect = category.aspects[0]
    detail = _DESCRIPTION_DETAIL[detail_level].format(aspect=aspect)
    use = _USES[use_index % len(_USES)]
    return f"{brand} {noun} for {use}. {detail}"
