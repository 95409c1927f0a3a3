"""components of the AIGP platform (imports as aigp.components)."""
