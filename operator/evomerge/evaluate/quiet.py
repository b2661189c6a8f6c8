"""Keeping lm-eval, transformers, datasets and the hub quiet during a search.

A search scores hundreds of candidates; one progress bar per candidate and per request type would bury
the search's own progress. Warnings below ERROR are dropped, errors still print, and exceptions still
propagate untouched.
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Iterator

LIBRARY_LOGGERS = ("lm_eval", "lm-eval", "transformers", "datasets", "huggingface_hub", "evaluate", "accelerate")


def quiet_libraries() -> None:
    """Lower the libraries' log level to ERROR and switch off their own progress bars (idempotent)."""
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging as transformers_logging

    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()


@contextmanager
def hidden_task_progress() -> Iterator[None]:
    """Hide the per-document progress bar lm-eval draws while building requests.

    `Task.build_all_requests` creates its tqdm bar with no way to disable it, and tqdm reads
    TQDM_DISABLE only when it is first imported; so the bar is switched off where lm-eval looks it up.
    """
    import lm_eval.api.task as task_module

    original = task_module.tqdm
    task_module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        task_module.tqdm = original
