"""Genomes and optimizers: numbers in, numbers out — pure, deterministic, ask/tell."""
