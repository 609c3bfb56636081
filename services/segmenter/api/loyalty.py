"""``/v1/loyalty``: see :mod:`services.segmenter.loyalty.routes`."""

from __future__ import annotations

from services.segmenter.loyalty.routes import build_router
from shared.http.admin import ADMIN

router = build_router(ADMIN)
