"""The catalogue: torch-free declarations of the facts every layer reads and none re-declares.

One module per kind of fact — merge methods (`methods`), evaluation engines (`engines`), optimizer
algorithms (`algorithms`) and the contracts between processes (`contracts`: exit codes, run-directory
layout, history event types). The spec types, CRD schema and CEL rules, renderers and README tables are
derived from these entries; implementations attach behaviour to the names declared here. It imports
nothing from evomerge, so the operator image reads it without torch.
"""
