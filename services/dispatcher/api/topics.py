"""``/v1/topics``: the subscription topics a customer can opt out of (or into)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.dispatcher import admin_ops as ops
from services.dispatcher.api.deps import RuntimeDep
from services.dispatcher.schemas import TopicCreate, TopicPublic
from shared.http.admin import ADMIN
from shared.http.problems import problems

router = APIRouter(prefix="/v1/topics", tags=["topics"], dependencies=ADMIN)


@router.get("", response_model=list[TopicPublic])
async def list_topics(runtime: RuntimeDep) -> list[TopicPublic]:
    return await ops.list_topics(runtime.engine)


@router.put("/{topic}", response_model=TopicPublic, responses=problems(422))
async def put_topic(
    topic: Annotated[str, Path(max_length=128)], body: TopicCreate, runtime: RuntimeDep
) -> TopicPublic:
    return await ops.put_topic(runtime.engine, topic=topic, body=body)
