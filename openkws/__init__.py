"""openkws: open-vocabulary, text-enrolled keyword spotting.

    >>> import openkws
    >>> openkws.score("clip.wav", ["turn on lights", "play music"])
    >>> openkws.detect("long.wav", "turn on lights")
"""

__version__ = "0.1.0"

__all__ = ["Detection", "KeywordSpotter", "KWSModel", "detect", "load_model", "score"]


def __getattr__(name):
    # Lazy: `import openkws.text` or `openkws.audio` should not pay for torch models and G2P.
    if name in ("detect", "load_model", "score"):
        from openkws import api
        return getattr(api, name)
    if name in ("Detection", "KeywordSpotter"):
        from openkws import spotter
        return getattr(spotter, name)
    if name == "KWSModel":
        from openkws.model import KWSModel
        return KWSModel
    raise AttributeError(f"module 'openkws' has no attribute {name!r}")
