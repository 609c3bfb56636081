"""What the segmenter's HTTP API takes and returns. Request bodies derive from
:class:`~shared.validation.SafeModel`: a NUL, a lone surrogate or NaN anywhere in one
(a rule's values included) is a 422."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.segmenter.rules.ast import Rule
from shared.validation import SafeModel

SEGMENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def _no_nul(text: str | None) -> str | None:
    if text is not None and "\x00" in text:
        raise ValueError("must not contain NUL characters (PostgreSQL cannot store them)")
    return text


#: free text stored in PostgreSQL, which cannot hold a NUL character
Text = Annotated[str, AfterValidator(_no_nul)]


class SegmentCreate(SafeModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        default=None,
        pattern=SEGMENT_ID_PATTERN,
        description="a slug; generated from the name when absent",
    )
    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=2_000)
    rule: Rule


class SegmentUpdate(SafeModel):
    """A new version of the segment; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=2_000)
    rule: Rule | None = None


class SegmentPublic(BaseModel):
    id: str
    name: str
    description: str
    version: int
    rule: dict[str, Any]
    status: Literal["ready", "backfilling"]
    members: int
    created_at: datetime
    updated_at: datetime


class SegmentVersionPublic(BaseModel):
    version: int
    rule: dict[str, Any]
    created_at: datetime


class PreviewRequest(SafeModel):
    model_config = ConfigDict(extra="forbid")

    rule: Rule
    sample_size: int = Field(default=20, ge=0, le=500)


class PreviewPublic(BaseModel):
    count: int
    sample: list[str]
    evaluated_at: datetime


class MembersPublic(BaseModel):
    segment_id: str
    customer_ids: list[str]
    next_after: str | None = Field(description="pass as `after` for the next page")


class MembershipPublic(BaseModel):
    segment_id: str
    segment_version: int
    entered_at: datetime


class EventStatPublic(BaseModel):
    event: str
    count: int
    value_sum: float
    first_at: datetime
    last_at: datetime


class ScoresPublic(BaseModel):
    churn_risk: float | None
    predicted_ltv: float | None
    rfm_recency: int | None
    rfm_frequency: int | None
    rfm_monetary: int | None
    rfm_tier: str | None
    method: str | None
    explanation: dict[str, Any] | None
    scored_at: datetime | None


class ProfilePublic(BaseModel):
    customer_id: str
    requested_id: str = Field(description="the id asked for; differs when it was merged")
    traits: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    timezone: str | None
    locale: str | None
    version: int
    aliases: list[str]
    memberships: list[MembershipPublic]
    scores: ScoresPublic
    events: list[EventStatPublic]


class ErasurePublic(BaseModel):
    customer_id: str
    erased_ids: list[str]
    exited_segments: list[str]
    #: whether the erased ids are now suppressed (``?suppress=true``)
    suppressed: bool


class SuppressionRequest(SafeModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(default="requested", min_length=1, max_length=200)


class SuppressionPublic(BaseModel):
    customer_id: str
    suppressed_at: datetime
    reason: str


class SuppressionsPublic(BaseModel):
    suppressions: list[SuppressionPublic]
    #: pass as ``after`` for the next page; null on the last page
    next_after: str | None


class FitReport(BaseModel):
    """What a refit did: the churn method that scored every customer and why (``churn``:
    the definition and each candidate's backtest), the LTV model of the buyers, counts."""

    model_config = ConfigDict(frozen=True)

    fitted_at: datetime
    #: the UTC day scored as of (the end of it; ``fitted_at``'s day unless ``as_of`` was given)
    as_of: date
    #: the churn method: ``recency``, ``bgnbd``, ``logistic``, ``boosted`` or
    #: ``recency_heuristic``
    method: str
    reason: str
    buyers: int
    repeat_buyers: int
    non_buyers: int
    params: dict[str, Any]
    seconds: float
    #: definition, method, reason (the selection rule that decided), per candidate the
    #: cross-validated AUC (mean, spread, per fold), Brier score and sample sizes, the
    #: winner's calibration per decile and its AUC per RFM tier
    churn: dict[str, Any] = Field(default_factory=dict)
    #: ``bgnbd_gamma_gamma``; ``bgnbd_mean_spend`` (Gamma-Gamma degenerate: the customer's
    #: mean spend per occasion × expected purchases, ``ltv_reason`` says why); or
    #: ``inactivity_fallback`` (too few buyers: no LTV)
    ltv_method: str | None = None
    ltv_reason: str | None = None
    #: seconds: reading the summaries and snapshots (``read_summaries`` of it the
    #: summaries), fitting and scoring in a worker thread (``fit_churn``, ``fit_rfm_ltv``,
    #: ``fit_rows`` of it), writing scores and profile messages, recomputing score segments
    phases: dict[str, float] = Field(default_factory=dict)


class LastFitPublic(BaseModel):
    """The latest refit as stored (``GET /v1/scores/fit``)."""

    fitted_at: datetime
    #: the UTC day the refit scored as of
    as_of: date
    method: str
    buyers: int
    repeat_buyers: int
    churn: dict[str, Any]
    params: dict[str, Any]


# --- /v1/loyalty --------------------------------------------------------------------


class LedgerEntryPublic(BaseModel):
    """Points earned (``source_id``: the message that earned them) or spent
    (``redeem:<id>``, negative points)."""

    source_id: str
    rule_id: str
    at: datetime
    points: int
    expires_at: datetime | None
    event: str | None


class ExpiryPublic(BaseModel):
    at: datetime
    points: int


class StandingPublic(BaseModel):
    """A customer's balance, tier, way to the next tier, and ledger (newest first)."""

    customer_id: str
    points: int
    tier: str
    next_tier: str | None
    points_to_next_tier: int | None
    qualifying_points: int
    expired: int
    expiring_within_30_days: int
    history: list[LedgerEntryPublic]
    expiries: list[ExpiryPublic]


class RedemptionCreate(SafeModel):
    id: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")
    points: int = Field(ge=1, le=100_000_000)


class RedemptionPublic(BaseModel):
    customer_id: str
    redemption_id: str
    #: the balance after the redemption
    points: int


class RefreshPublic(BaseModel):
    #: standings that changed; -1 when another process is refreshing now
    changed: int


# --- /v1/recommendations, /v1/products ----------------------------------------------


class ProductUpdate(SafeModel):
    category: str | None = Field(default=None, min_length=1, max_length=200)
    consumable: bool = False
    name: str | None = Field(default=None, min_length=1, max_length=500)


class ProductPublic(ProductUpdate):
    product_id: str


class BecausePublic(BaseModel):
    product_id: str
    kind: Literal["purchase", "view"]
    count: int
    last_at: datetime


class RecommendationPublic(BaseModel):
    product_id: str
    score: float
    source: str
    because: list[BecausePublic]


class InteractionPublic(BaseModel):
    product_id: str
    category: str | None
    kind: Literal["purchase", "view"]
    count: int
    last_at: datetime


class RecommendationsPublic(BaseModel):
    customer_id: str
    computed_at: datetime | None
    items: list[RecommendationPublic]
    #: what the list was computed from: the customer's purchases and views, newest first
    history: list[InteractionPublic]


class RecomputePublic(BaseModel):
    """A recompute of every customer's recommendations (seconds per phase)."""

    computed_at: datetime
    customers: int
    products: int
    interactions: int
    changed: int
    seconds: float
    phases: dict[str, float]
