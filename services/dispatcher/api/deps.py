"""What the routes depend on beside `shared.http.admin.ADMIN`: the runtime, typed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.dispatcher.runtime import Runtime
from shared.http.deps import runtime_dependency

RuntimeDep = Annotated[Runtime, Depends(runtime_dependency(Runtime))]
