"""The admin API's bodies and answers (snake_case JSON): ``XCreate`` / ``XUpdate`` what a
client sends, ``XPublic`` what it gets back. The sending policy's model is
:class:`~services.dispatcher.policy.SendPolicy`, the template's
:class:`~services.dispatcher.templates.TemplateDefinition`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, JsonValue

from services.dispatcher.templates import TemplateDefinition
from shared.events.channels import Channel
from shared.events.dispatch_requests import Priority
from shared.http.nul_body import NulFree
from shared.validation import SafeModel

#: the largest template version PostgreSQL's ``integer`` holds
MAX_VERSION = 2**31 - 1
POOL_ID_PATTERN = r"^[A-Za-z0-9_-]+$"


class Model(SafeModel):
    """No NUL, lone surrogate, NaN or out-of-range date anywhere (issue 21)."""

    model_config = ConfigDict(extra="forbid")


# --- templates -----------------------------------------------------------------------


class TemplateCreate(Model):
    #: not only dots (``..`` is a path segment, not an id)
    id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[\w.-]*[\w-][\w.-]*$"
    )
    definition: TemplateDefinition


class TemplatePublic(Model):
    id: str
    version: int
    latest_version: int
    archived: bool
    definition: TemplateDefinition
    created_at: datetime


class PreviewCreate(Model):
    customer_id: str = Field(min_length=1, max_length=256)
    channel: Channel = Channel.EMAIL
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    context: dict[str, JsonValue] = Field(default_factory=dict)


class PreviewPublic(Model):
    channel: Channel
    locale: str
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    title: str | None = None
    url: str | None = None
    whatsapp_template: str | None = None
    whatsapp_parameters: list[str] = Field(default_factory=list)
    data: dict[str, str] | None = None


# --- subscription topics -------------------------------------------------------------


class TopicCreate(Model):
    name: str = Field(min_length=1, max_length=256)
    description: str = Field(default="", max_length=2_000)
    default_subscribed: bool = True


class TopicPublic(TopicCreate):
    topic: str


# --- preferences ---------------------------------------------------------------------


class PreferencesUpdate(Model):
    unsubscribed: bool | None = None
    channels: dict[Channel, bool] = Field(default_factory=dict)
    topics: dict[str, bool] = Field(default_factory=dict, max_length=1_000)


class PreferencesPublic(Model):
    customer_id: str
    unsubscribed: bool
    channels: dict[str, bool]
    topics: dict[str, bool]


# --- deliveries ----------------------------------------------------------------------


class OutcomePublic(Model):
    outcome_id: str
    status: str
    reason: str | None
    channel: str | None
    at: datetime
    deferred_until: datetime | None
    provider_message_id: str | None


class DeliveryPublic(Model):
    dispatch_id: str
    customer_id: str
    status: str
    channel: str | None
    template_id: str
    template_version: int | None
    reason: str | None
    deferred_until: datetime | None
    sent_at: datetime | None
    attempts: int
    created_at: datetime
    journey_id: str | None = None
    step_id: str | None = None
    outcomes: list[OutcomePublic]


class TestSendCreate(Model):
    customer_id: str = Field(min_length=1, max_length=256)
    template_id: str = Field(min_length=1, max_length=256)
    template_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    channels: list[Channel] = Field(
        default_factory=lambda: [Channel.EMAIL], min_length=1, max_length=len(Channel)
    )
    context: dict[str, JsonValue] = Field(default_factory=dict)
    #: ``critical`` (default) skips caps and quiet hours; consent always applies
    priority: Priority = Priority.CRITICAL


# --- bounces and complaints ----------------------------------------------------------


class FeedbackCreate(NulFree):
    """A bounce or complaint, as an email provider's webhook (or a relay of it) reports
    it: the ``X-Tenure-Dispatch-Id`` header of the message, or its ``Message-ID``."""

    dispatch_id: str | None = Field(default=None, max_length=256)
    message_id: str | None = Field(default=None, max_length=512)
    kind: Literal["bounce", "complaint"]
    bounce_type: Literal["hard", "soft"] = "hard"
    detail: str | None = Field(default=None, max_length=1_000)


class FeedbackPublic(Model):
    status: Literal["recorded"] = "recorded"
    dispatch_id: str


# --- coupon pools and offers ---------------------------------------------------------

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=POOL_ID_PATTERN)]


class PoolCreate(Model):
    id: str = Field(min_length=1, max_length=64, pattern=POOL_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    #: below this many free codes the pool alerts (TenureCouponPoolLow)
    low_water: int = Field(default=100, ge=0, le=2**31 - 1)  # PostgreSQL integer


class PoolPublic(Model):
    id: str
    name: str
    low_water: int
    available: int
    issued: int
    created_at: datetime


class CodesCreate(Model):
    codes: list[Code] = Field(min_length=1, max_length=100_000)


class CodesPublic(Model):
    added: int
    available: int


class CodeCheck(Model):
    code: str = Field(min_length=1, max_length=100)


class CodePublic(Model):
    """What a code is worth: a pool code's issue, or a signed code's offer."""

    valid: bool
    kind: Literal["pool", "signed"] | None = None
    reason: str | None = None
    #: a pool code
    pool: str | None = None
    issued: bool | None = None
    dispatch_id: str | None = None
    customer_id: str | None = None
    #: a signed code
    code: str | None = None
    value_kind: str | None = None
    value: int | None = None
    expires_on: str | None = None
    expired: bool | None = None
