"""pipelines of the AIGP platform (imports as aigp.pipelines)."""
