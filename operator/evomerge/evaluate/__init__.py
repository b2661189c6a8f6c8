"""How a candidate gets a score: lm-evaluation-harness tasks run through an engine.

tasks.py        TaskSuite: the objectives' tasks loaded once, a seeded subsample fixed per search
engines/        resident transformers (merge in place) | TGI | vLLM, each an lm-eval model
scoring.py      metrics → fitness (a weighted scalar, or a vector for Pareto optimizers)
items.py        per-item results from lm-eval's logged samples; two models compared on the same items
paired.py       paired significance tests: exact McNemar (pass/fail items), paired bootstrap (the rest)
cache.py        persistent scores by (recipe, evaluation context)
model.py        evaluate_model: one finished checkpoint (`evomerge evaluate`)
batch.py        score_batch: the scorer of an evaluation pod (compact JSON out)
quiet.py, template_cache.py   keeping lm-eval quiet and fast across hundreds of candidates
"""
