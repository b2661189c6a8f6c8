"""evomerge: evolutionary search for LLM merge recipes, on Kubernetes or on one machine."""

__version__ = "0.1.0"
