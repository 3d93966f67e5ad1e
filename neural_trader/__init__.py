"""neural-trader: does a small network learn to trade, or does it fit noise?

The framework-free core. Nothing here imports Prefect or DVC, reads params.yaml
or builds a path: functions take tensors and typed configs and return values.
"""

__version__ = "0.1.0"
