"""How a run's processes share the model and where they compute (no torch): DeepSpeed config, devices."""
