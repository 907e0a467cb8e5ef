"""Hyperparameter sweeps (``tuneforge sweep``): command.py (the CLI), preflight.py (before), trial.py (each
trial, called by Hydra through hydra_app.py), results.py (after)."""
