"""The search loop: optimizer ⇄ executor, the history store, resume by replay, status reporting."""
