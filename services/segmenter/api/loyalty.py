"""``/v1/loyalty``: see :mod:`services.segmenter.loyalty.routes`."""

from __future__ import annotations

from services.segmenter.api.deps import ADMIN
from services.segmenter.loyalty.routes import build_router

router = build_router(ADMIN)
