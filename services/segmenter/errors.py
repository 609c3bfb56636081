"""What the segmenter's operations refuse, carrying what the API answers.

SegmenterError
├── NotFound        no such segment, profile or suppression → 404
├── Conflict        the operation clashes with the current state → 409
│   └── RefitRunning   another process holds the refit lock
└── InvalidRule     a rule reads segments that do not exist, or makes a cycle → 422
"""

from __future__ import annotations


class SegmenterError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(SegmenterError):
    pass


class Conflict(SegmenterError):
    pass


class RefitRunning(Conflict):
    def __init__(self) -> None:
        super().__init__("a refit is running in another segmenter process; try again when it ends")


class InvalidRule(SegmenterError):
    """``loc`` is where in the request the rule is (a FastAPI validation location)."""

    def __init__(self, detail: str, loc: tuple[str | int, ...] = ("body", "rule")) -> None:
        super().__init__(detail)
        self.loc = loc
