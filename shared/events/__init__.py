"""One module per topic (its name, dead-letter topic and versioned payload model),
all declared once in :mod:`shared.events.registry`."""

from shared.events.registry import ALL_TOPICS

__all__ = ["ALL_TOPICS"]
