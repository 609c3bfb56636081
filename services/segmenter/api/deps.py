"""What the admin routes depend on beside `shared.http.admin.ADMIN`: the runtime."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.segmenter.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
