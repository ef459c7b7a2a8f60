"""pickwise: learning to normalize, learning to group and model selection for PyTorch."""

__version__ = "0.1.0.dev0"
