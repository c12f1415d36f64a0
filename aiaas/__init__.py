"""aiaas: from a PyTorch model to a production endpoint."""

__version__ = "0.1.0"
