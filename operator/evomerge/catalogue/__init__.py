"""The catalogue: torch-free declarations of the facts every layer reads and none re-declares.

One module per kind of fact — merge methods (`methods`), evaluation engines (`engines`), optimizer
algorithms with their options blocks (`algorithms`), the contracts between processes (`contracts`: exit codes,
run-directory layout, history event types), model URIs (`uris`) and how a resource's fields are written
(`wire`: camelCase, numbers as strings, the base of the spec's types and of the options blocks). The spec
types, CRD schema and CEL rules, renderers and README tables are derived from these entries; implementations
attach behaviour to the names declared here. It imports nothing from evomerge (pydantic is its one library),
so the operator image reads it without torch.
"""
