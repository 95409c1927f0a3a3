"""serving of the AIGP platform (imports as aigp.serving)."""
