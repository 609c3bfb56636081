"""The admin bearer token every service's admin API asks for.

A service puts its accepted tokens (``TokenDigests``) in ``app.state.admin_tokens``
and declares its admin routes with ``dependencies=ADMIN``; a missing or wrong token
is a 401 that says which it was.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import TokenDigests
from shared.http.problems import Unauthorized

_bearer = HTTPBearer(auto_error=False)


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    tokens: TokenDigests = request.app.state.admin_tokens
    if credentials is None or not tokens.accepts(credentials.credentials):
        raise Unauthorized(
            "send an admin token as `Authorization: Bearer <token>`"
            if credentials is None
            else "the admin token is not valid"
        )


#: ``dependencies=ADMIN`` on a router or route
ADMIN: list[DependsParam] = [Depends(require_admin)]
