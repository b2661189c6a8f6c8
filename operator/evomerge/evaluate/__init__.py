"""How a candidate gets a score: lm-evaluation-harness tasks run through an engine."""
