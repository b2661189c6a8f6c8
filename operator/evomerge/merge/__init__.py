"""The tensor math of merging: recipes, layer groups, methods, layer paths, the resident merger and the exporter.

Public surface: MergeRecipe / ExpertWeights (recipe), LayerPath / Hop / decode_path (layer_path),
METHODS / get_method (methods), group_names / group_of (groups), merge_tensor / method_options (apply),
ResidentMerger (resident), export_merge (export), PathModel (dataflow), to_mergekit_config
(mergekit_config), combined_adapter / recipe_adapter (adapter), adapter_servable (adapter_rules, torch-free),
open_recipe_inputs (inputs).
"""
