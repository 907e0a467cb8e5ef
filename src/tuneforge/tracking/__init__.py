"""Experiment tracking (wandb, TensorBoard): trackers.py."""
