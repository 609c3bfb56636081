"""Errors of the scoring models.

TenureError (shared.errors)
└── FitError   a model could not be fitted: degenerate data or the optimiser failed
"""

from __future__ import annotations

from shared.errors import TenureError


class FitError(TenureError):
    """Maximum-likelihood fitting gave no usable parameters.

    ``model`` names the model (``"bgnbd"``, ``"gamma_gamma"``); ``reason`` says why, in
    words fit for a score explanation.
    """

    def __init__(self, *, model: str, reason: str) -> None:
        super().__init__(f"{model}: {reason}")
        self.model = model
        self.reason = reason
