"""``/v1/recommendations`` and ``/v1/products``: see :mod:`services.segmenter.recommend.routes`."""

from __future__ import annotations

from services.segmenter.recommend.routes import build_router
from shared.http.admin import ADMIN

router = build_router(ADMIN)
