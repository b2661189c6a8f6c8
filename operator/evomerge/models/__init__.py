"""Model locations and checkpoint files: where weights live and how to read them safely."""
