"""Fine-tuning strategies (full / LoRA / QLoRA): registry.py, the only place that knows the methods."""
