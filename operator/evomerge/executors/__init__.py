"""Where evaluations run: in this process, or as Kubernetes Jobs."""
