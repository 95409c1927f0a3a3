"""The simulated marketplace: the ground truth for every decision-quality number in this project."""

from aigp.market.config import DynamicsConfig, MarketConfig
from aigp.market.observation import Observation, Policy
from aigp.market.simulator import Market, RunResult

__all__ = ["DynamicsConfig", "Market", "MarketConfig", "Observation", "Policy", "RunResult"]
