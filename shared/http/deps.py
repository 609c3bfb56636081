"""The typed runtime dependency every service's routes use.

A service's lifespan puts its ``Runtime`` in ``app.state.runtime``; its ``api/deps.py``
declares ``RuntimeDep = Annotated[Runtime, Depends(runtime_dependency(Runtime))]`` so
that routes see the runtime's real type and mypy checks what they reach into.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


def runtime_dependency(kind: type[T]) -> Callable[[Request], Coroutine[Any, Any, T]]:
    """A FastAPI dependency returning ``app.state.runtime``, checked to be a ``kind``."""

    async def get_runtime(request: Request) -> T:  # async: no thread-pool hop per request
        runtime = getattr(request.app.state, "runtime", None)
        if not isinstance(runtime, kind):
            found = type(runtime).__name__
            raise RuntimeError(f"app.state.runtime is {found}, not {kind.__name__}")
        return runtime

    return get_runtime
