"""lit_metriplector: Metriplector for PyTorch Lightning."""

__version__ = "0.1.0"
