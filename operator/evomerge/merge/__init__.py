"""The tensor math of merging: recipes, layer groups, methods, the resident merger and the exporter."""
