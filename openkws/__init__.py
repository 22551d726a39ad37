"""openkws: open-vocabulary, text-enrolled keyword spotting."""

__version__ = "0.1.0"
