"""feature_repo of the AIGP platform (imports as aigp.feature_repo)."""
