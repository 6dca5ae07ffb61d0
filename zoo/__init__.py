"""zoo: a PyTorch Lightning model zoo for physics-consistent molecular machine learning."""

__version__ = "0.0.1"
