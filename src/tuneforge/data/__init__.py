"""Data preparation: formats, lint, augmentation, splits, token counts (see prepare.py for the cache)."""
