"""What every admin route depends on: the runtime, and an admin bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.journey.runtime import Runtime
from shared.auth import TokenDigests

_bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    tokens: TokenDigests = request.app.state.admin_tokens
    if credentials is None or not tokens.accepts(credentials.credentials):
        raise HTTPException(
            401,
            detail="send an admin token as `Authorization: Bearer <token>`"
            if credentials is None
            else "the admin token is not valid",
            headers={"WWW-Authenticate": "Bearer"},
        )


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ADMIN = [Depends(require_admin)]
