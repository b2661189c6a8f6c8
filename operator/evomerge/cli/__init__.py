"""The `evomerge` command line."""
