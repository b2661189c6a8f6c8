"""lm-eval tasks over the zoo with a continuous score, for tests that compare numbers between engines."""

from __future__ import annotations

from pathlib import Path

import yaml

FIT_TASK, HELD_OUT_TASK = "nano_fit", "nano_fit_heldout"
FIT_KEY = f"{FIT_TASK}/bits_per_byte"
HELD_OUT_KEY = f"{HELD_OUT_TASK}/bits_per_byte"


def write_fit_tasks(zoo, directory: Path) -> Path:
    """Bits per byte of the zoo's two-skill prompts (search and held-out splits). The nano zoo answers almost
    nothing exactly, so exact-match scores would all tie."""
    for task, split in ((FIT_TASK, "search"), (HELD_OUT_TASK, "heldout")):
        (directory / f"{task}.yaml").write_text(yaml.safe_dump({
            "task": task,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(zoo.tasks_dir / f"pairs_{split}.jsonl")}},
            "test_split": "test",
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{prompt}}{{answer}}",
            "metric_list": [{"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False}],
            "metadata": {"version": 1.0},
        }, sort_keys=False))
    return directory
