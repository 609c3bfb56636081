"""What the segmenter's operations refuse: the shared problem-details errors
(:mod:`shared.http.problems`), answered by the one handler set every service installs.

ApiError                 (shared.http.problems)
├── NotFound             no such segment, profile, suppression, program or product → 404
├── Conflict             the operation clashes with the current state → 409
│   └── RefitRunning     another process holds the refit lock
└── Invalid              → 422
    └── InvalidRule      a rule reads segments that do not exist, or makes a cycle
"""

from __future__ import annotations

from shared.http.problems import Conflict, Invalid, NotFound

__all__ = ["Conflict", "InvalidRule", "NotFound", "RefitRunning"]


class RefitRunning(Conflict):
    def __init__(self) -> None:
        super().__init__("a refit is running in another segmenter process; try again when it ends")


class InvalidRule(Invalid):
    """``loc`` is where in the request the rule is (a FastAPI validation location): the
    answer's ``errors`` holds it, as FastAPI's own 422s do."""

    def __init__(self, detail: str, loc: tuple[str | int, ...] = ("body", "rule")) -> None:
        super().__init__(detail, loc=loc)
        self.loc = loc
