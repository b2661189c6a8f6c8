"""Kubernetes: kopf handlers, reconcile logic, renderers of child objects, typed views of resources."""
