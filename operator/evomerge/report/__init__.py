"""What a user looks at after a search, and how evomerge meets the tools they already use.

- `report.render.write_report(run_dir)`: the run report (self-contained HTML + markdown with plots);
- `report.model_card.write_model_card(...)`: README.md of an exported merge, with its mergekit config
  (merge/mergekit_config.py writes and reads mergekit's format).
Modules are imported directly (matplotlib loads only where a report is drawn).
"""
