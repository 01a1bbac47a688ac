"""Shared by train, export and benchmark: the ModelSpec, metadata encoding, the model zoo, checkpoints
and metrics. Nothing here imports a converter, so `import core` stays fast."""

__version__ = "0.1.0"
