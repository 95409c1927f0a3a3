"""batch_price through .python_func() on what materialize_features outputs (a tiny market), with the model
registry (champion and challenger = two experiment groups) and a loopback OpenAI-compatible predictor."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kfp.dsl import HTML, Dataset, Metrics

from aigp.components.batch_price.component import batch_price
from aigp.components.materialize_features.component import materialize_features
from aigp.decisions import validate_decisions
from aigp.ingest import table_file
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory
from aigp.schema import Group

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # the serving tests' helpers
from serving_support import MODEL, ScriptedPredictor, in_a_safe, registry_env

DATE = "2026-03-06"  # every SKU of the tiny market is launched and in its first 14 days
ARMS = {"champion": {"share": 0.5, "model_ref": "champion"}, "challenger": {"share": 0.5, "model_ref": "challenger"}}


@pytest.fixture(scope="module")
def feature_data(tmp_path_factory) -> Dataset:
    """What materialize_features hands the nightly pipeline's next step."""
    logs = simulate_to_directory(MarketConfig.build(n_skus=40, launch_days=5, seed=3),
                                 tmp_path_factory.mktemp("logs") / "market")
    root = tmp_path_factory.mktemp("features")
    out = Dataset(uri=str(root / "feature_data"))
    materialize_features.python_func(market_logs=Dataset(uri=str(logs.path)), start=DATE, end="2026-03-07",
                                     feature_data=out, metrics=Metrics(uri=str(root / "metrics")))
    return out


@pytest.fixture(scope="module")
def predictor():
    from aigp.openai_compat.local_endpoint import LocalOpenAIServer

    backend = ScriptedPredictor()
    with LocalOpenAIServer({MODEL: backend}) as server:
        yield backend, server.base_url


def _run(feature_data: Dataset, predictor_url: str, tmp_path: Path, monkeypatch, **kw):
    for key, value in registry_env(tmp_path.parent / "registry").items():
        monkeypatch.setenv(key, value)
    config = {"pricing": {"model_name": MODEL, "experiment": {"salt": "component-test", "arms": ARMS},
                          "predictor": {"request_size": 1, "concurrency": 2, "timeout_s": 30}}, "chunk_size": 8}
    outputs = {"decisions": Dataset(uri=str(tmp_path / "decisions")), "report": HTML(uri=str(tmp_path / "r.html")),
               "metrics": Metrics(uri=str(tmp_path / "metrics"))}
    priced = batch_price.python_func(feature_data=feature_data, date=DATE, predictor_url=predictor_url,
                                     work_dir=str(tmp_path / "work"), config_yaml=yaml.safe_dump(config),
                                     **outputs, **kw)
    return priced, outputs


def test_prices_every_active_sku_once_with_its_groups_version(feature_data, predictor, tmp_path,
                                                              monkeypatch) -> None:
    backend, url = predictor
    backend.reset("teacher")
    backend.per_sku[3] = "garbage"  # twice garbage: one retry, then a flagged hold
    priced, out = _run(feature_data, url, tmp_path, monkeypatch)

    files = sorted(Path(out["decisions"].path).iterdir())
    assert [f.name for f in files] == [f"decisions-{DATE}.parquet"]  # the folder monitor_pricing reads
    log = validate_decisions(pd.read_parquet(files[0]))
    skus = pd.read_parquet(Path(feature_data.path) / table_file(Group.SKU), columns=["sku_id"])["sku_id"]
    assert priced == len(log) == skus.nunique() == 40 and log["sku_id"].is_unique
    assert set(log["sku_id"]) == set(skus)
    assert (log["date"] == pd.Timestamp(DATE)).all()
    versions = log.groupby("group")["model_version"].unique().to_dict()
    assert {g: list(v) for g, v in versions.items()} == {"champion": ["1"], "challenger": ["2"]}
    assert all(in_a_safe(p, c, n) for p, c, n in log[["prev_discount", "discount_change", "new_discount"]]
               .itertuples(index=False))
    held = log.set_index("sku_id").loc[3]
    assert held["fallback"] and held["fallback_reason"] == "unparsable_output" and held["discount_change"] == 0
    assert backend.calls[3] == 2
    assert (~log.drop(index=log.index[log["sku_id"] == 3])["fallback"]).all()

    metrics = out["metrics"].metadata
    assert metrics["skus"] == 40.0 and metrics["priced"] == 40.0 and metrics["fallbacks"] == 1.0
    assert metrics["champion_priced"] + metrics["challenger_priced"] == 40.0
    assert metrics["fallback_rate"] == pytest.approx(1 / 40)
    assert out["decisions"].metadata["model_versions"] == {"champion": "1", "challenger": "2"}
    page = Path(out["report"].path).read_text()
    assert 'id="sku-3"' in page and "unparsable_output" in page

    # A retried step with the same work_dir finds the day finished: nothing is priced twice.
    requests = backend.requests
    again, out2 = _run(feature_data, url, tmp_path, monkeypatch)
    assert again == priced and backend.requests == requests
    assert pd.read_parquet(Path(out2["decisions"].path) / files[0].name).equals(pd.read_parquet(files[0]))


def test_a_bad_date_or_config_names_the_field(feature_data, predictor, tmp_path, monkeypatch) -> None:
    from aigp.config import ConfigError

    _, url = predictor
    with pytest.raises(ValueError, match="2026-13-01"):
        batch_price.python_func(feature_data=feature_data, date="2026-13-01", predictor_url=url,
                                decisions=Dataset(uri=str(tmp_path / "d")), report=HTML(uri=str(tmp_path / "r")),
                                metrics=Metrics(uri=str(tmp_path / "m")))
    with pytest.raises(ConfigError, match="chunk_sise"):
        batch_price.python_func(feature_data=feature_data, date=DATE, predictor_url=url, config_yaml="chunk_sise: 3",
                                decisions=Dataset(uri=str(tmp_path / "d")), report=HTML(uri=str(tmp_path / "r")),
                                metrics=Metrics(uri=str(tmp_path / "m")))
