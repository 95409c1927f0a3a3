"""monitoring of the AIGP platform (imports as aigp.monitoring)."""
