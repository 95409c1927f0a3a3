"""count_pairs through .python_func()."""

from __future__ import annotations

import pandas as pd
import pytest
from kfp.dsl import Dataset

from aigp.align.pairs import PairsConfig, PairSet, write_pairs
from aigp.components.count_pairs.component import count_pairs


@pytest.mark.parametrize("n", [0, 3])
def test_counts_the_pair_records(tmp_path, n: int) -> None:
    records = [{"prompt": [{"role": "user", "content": str(i)}], "chosen": [], "rejected": []} for i in range(n)]
    write_pairs(tmp_path / "pairs", PairSet(pd.DataFrame(), records, {}), config=PairsConfig())
    assert count_pairs.python_func(pairs=Dataset(uri=str(tmp_path / "pairs"))) == n


def test_a_missing_pair_set_is_an_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"pairs\.jsonl"):
        count_pairs.python_func(pairs=Dataset(uri=str(tmp_path / "nothing")))
