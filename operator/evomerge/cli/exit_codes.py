"""Exit codes scripts can rely on."""

OK = 0
SEARCH_FAILED = 1  # the search ran but failed (too many failed evaluations)
INVALID_INPUT = 2  # bad flags, an invalid spec, unreadable models (typer uses 2 for usage errors too)
INTERRUPTED = 130  # Ctrl-C; the run directory can be resumed
