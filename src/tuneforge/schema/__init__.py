"""The ground floor: the typed config of a run (``RunConfig`` and one module per config group).

Nothing here imports anything of tuneforge above this package (import-linter's layers contract in
``pyproject.toml`` enforces it), and nothing imports more than the standard library and omegaconf, so
``plan``, config validation and every component can depend on the schema without loading each other.
"""
