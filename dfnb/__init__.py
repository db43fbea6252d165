"""dfnb: an investigation kit for DeepFilterNet streaming.

Nothing is imported or computed here on purpose (no work at import time): import the room you need,
e.g. ``from dfnb import models, offline, streaming, export, host``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
