"""The engagement events the dispatcher publishes on ``customer.events``.

They are ordinary ``track`` events (so segments, journeys and metrics read them like
any other), named as here, carrying the message's attribution in ``properties``
under the keys below, so a journey can wait for "opened" and metrics can count it.
"""

from __future__ import annotations

from typing import Final

EMAIL_OPENED: Final = "Email Opened"
EMAIL_LINK_CLICKED: Final = "Email Link Clicked"
EMAIL_BOUNCED: Final = "Email Bounced"
EMAIL_MARKED_AS_SPAM: Final = "Email Marked as Spam"
PUSH_OPENED: Final = "Push Opened"
MESSAGE_CLICKED: Final = "Message Link Clicked"
UNSUBSCRIBED: Final = "Unsubscribed"
SURVEY_ANSWERED: Final = "Survey Answered"
#: an offer code drawn for a message (pool or signed), with the dispatch's attribution
COUPON_ISSUED: Final = "Coupon Issued"

#: events that mean the customer saw the message
OPENED_EVENTS: Final = frozenset({EMAIL_OPENED, PUSH_OPENED})
#: events the platform sends about a customer, not the customer acting: they are
#: counted (segments may read them) but do not make the customer active
NOT_ACTIVITY: Final = frozenset({COUPON_ISSUED})
#: events that mean the customer acted on the message
CLICKED_EVENTS: Final = frozenset({EMAIL_LINK_CLICKED, MESSAGE_CLICKED})

# The keys of ``properties`` every engagement event carries (camelCase, as Segment).
DISPATCH_ID: Final = "dispatchId"
JOURNEY_ID: Final = "journeyId"
JOURNEY_VERSION: Final = "journeyVersion"
STEP_ID: Final = "stepId"
RUN_ID: Final = "runId"
VARIANT: Final = "variant"
CHANNEL: Final = "channel"
TEMPLATE_ID: Final = "templateId"
# ``Survey Answered``: ``surveyKind`` ("nps" 0–10 or "csat" 1–5), ``score``, optional ``comment``
SURVEY_KIND: Final = "surveyKind"
SURVEY_SCORE: Final = "score"
SURVEY_COMMENT: Final = "comment"
# ``Email Link Clicked``: the URL clicked
URL: Final = "url"
# ``Coupon Issued``: the code, where it came from (``pool`` id or ``signed``), its offer
COUPON: Final = "coupon"  # the Segment e-commerce spec's key, so redemptions match issues
COUPON_POOL: Final = "couponPool"
COUPON_KIND: Final = "couponKind"  # "pool" or "signed"
COUPON_EXPIRES_AT: Final = "couponExpiresAt"
#: the redemption events metrics ties back to the ``Coupon Issued`` of the same code:
#: ``Coupon Applied`` (Segment spec) and the purchase event carrying ``coupon``
COUPON_APPLIED: Final = "Coupon Applied"
