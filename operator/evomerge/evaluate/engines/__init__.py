"""Engines: where the merged model runs while lm-eval scores it."""
