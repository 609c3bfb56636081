"""The bare-FastAPI baseline: ingest's routes with the same payloads, and no Kafka.

Each endpoint reads the body, parses it as JSON and answers ``{"success": true}``:
the cost of uvicorn + FastAPI + one ``orjson.loads``, which is the ceiling an
endpoint doing more can approach. Served by uvicorn with ingest's worker count:
``python -m uvicorn tenure.bench.bare:app --workers N``.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request, Response

_OK = b'{"success":true}'

app = FastAPI(title="bare baseline", openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/track")
@app.post("/v1/batch")
async def accept(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(_OK, media_type="application/json")


@app.get("/readyz")
async def readyz() -> Response:
    return Response(_OK, media_type="application/json")
