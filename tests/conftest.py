"""Shared fixtures. Tests run offline: no hub, no telemetry."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")

import pytest

from aigp.market.config import MarketConfig

SMALL_MARKET = {"n_skus": 400, "launch_days": 20, "seed": 5}


@pytest.fixture(scope="session")
def small_market_config() -> MarketConfig:
    return MarketConfig.build(**SMALL_MARKET)


@pytest.fixture(scope="session")
def market_logs(tmp_path_factory: pytest.TempPathFactory, small_market_config: MarketConfig):
    """A complete market log directory (400 SKUs x 14 days) shared by every test that reads logs.

    Read-only: tests that need to modify logs copy them first.
    """
    from aigp.market.logs import simulate_to_directory

    return simulate_to_directory(small_market_config, tmp_path_factory.mktemp("logs") / "market")


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread (tiny networks gain nothing from a second one), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
