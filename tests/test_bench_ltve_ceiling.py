"""bench_ltve_ceiling's review score: what a reader of every review posted so far concludes, with no look-ahead."""

import numpy as np
import pandas as pd

from aigp.market.text import read_review_sentiment
from bench.bench_ltve_ceiling import review_scores


def _ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def test_review_score_is_the_mean_lexicon_score_of_reviews_posted_by_the_decision() -> None:
    good = "Superb assembly, I already ordered a second toy car."
    bad = "Returning it, the fit did not hold up."
    plain = "Okay hoodie. The durability is as described."
    reviews = pd.DataFrame({  # deliberately out of order
        "sku_id": [7, 3, 7, 7],
        "review_seq": [2, 0, 0, 1],
        "event_timestamp": [_ts("2026-04-05"), _ts("2026-04-01"), _ts("2026-04-02"), _ts("2026-04-03")],
        "text": pd.Categorical([plain, bad, good, bad]),
    })
    rows = pd.DataFrame({"sku_id": [7, 7, 7, 7, 3, 99],
                         "event_timestamp": [_ts("2026-04-01"), _ts("2026-04-02"), _ts("2026-04-04"),
                                             _ts("2026-04-05"), _ts("2026-04-09"), _ts("2026-04-09")]})
    g, b, p = (read_review_sentiment(t) for t in (good, bad, plain))
    assert g > 0 > b  # the fixture means what it says
    out = review_scores(rows, reviews)
    np.testing.assert_allclose(out[:, 0], [0.0, g, (g + b) / 2, (g + b + p) / 3, b, 0.0])
    np.testing.assert_allclose(out[:, 1], np.log1p([0, 1, 2, 3, 1, 0]))
