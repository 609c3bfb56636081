"""A message rendered for its customer: the template's variant with the request's
context, the customer's profile, the offers' codes, and every link signed."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from services.dispatcher.channels.base import Outgoing
from services.dispatcher.contacts import Contact
from services.dispatcher.links import LinkSigner
from services.dispatcher.offers.template import OfferFunctions
from services.dispatcher.policy import Decision
from services.dispatcher.templates import (
    TemplateDefinition,
    TemplateError,
    link_hosts,
    render_variant,
    rewrite_links,
)
from shared.events.channels import Channel
from shared.events.dispatch_requests import DispatchRequest


class Composer:
    """Renders messages with the deployment's link signer and offer keys."""

    def __init__(
        self,
        signer: LinkSigner,
        *,
        offer_keys: Mapping[int, bytes] | None = None,
        offer_key_id: int = 0,
    ) -> None:
        self.signer = signer
        self._offer_keys = dict(offer_keys or {})
        self._offer_key_id = offer_key_id

    def offers_for(
        self, request: DispatchRequest, codes: Mapping[str, str], now: datetime
    ) -> OfferFunctions:
        """``coupon()`` and ``offer_code()`` for one dispatch's rendering; ``codes``:
        pool → the code drawn for this dispatch."""
        return OfferFunctions(
            dispatch_id=request.dispatch_id,
            today=now.date(),
            drawn=dict(codes),
            keys=self._offer_keys,
            key_id=self._offer_key_id,
        )

    def compose(
        self,
        request: DispatchRequest,
        decision: Decision,
        definition: TemplateDefinition,
        contact: Contact | None,
        offers: OfferFunctions,
    ) -> Outgoing:
        """The message rendered for the customer, its links signed; :class:`TemplateError`
        when the template does not render (an offer it cannot have included)."""
        assert decision.channel is not None and decision.address is not None
        channel = decision.channel
        dispatch_id = request.dispatch_id
        variant = definition.variant(channel, contact.locale if contact else None)
        if variant is None:  # decide() only picks channels the template has
            raise TemplateError(f"no {channel} variant")
        signer = self.signer
        unsubscribe = signer.unsubscribe(dispatch_id)
        context: dict[str, Any] = {
            "customer": (contact or Contact(request.customer_id)).template_context(),
            "context": request.context,
            "message": {
                "dispatch_id": dispatch_id,
                "channel": channel.value,
                "journey_id": request.journey_id,
                "step_id": request.step_id,
                "variant": request.variant,
            },
            "unsubscribe_url": unsubscribe,
            "preferences_url": _Lazy(lambda: signer.preferences(dispatch_id)),
            "link": lambda url: signer.click(dispatch_id, str(url)),
            "survey_url": lambda kind, score: signer.survey(dispatch_id, str(kind), int(score)),
        }
        context.update(offers.context())
        rendered = render_variant(variant, context)
        if channel is Channel.EMAIL and rendered.html is not None:
            page = rewrite_links(
                rendered.html,
                lambda url: url if signer.is_own(url) else signer.click(dispatch_id, url),
                hosts=link_hosts(variant),  # no signed redirect to a host from data
            )
            pixel = (
                f'<img src="{signer.open_pixel(dispatch_id)}" width="1" height="1" alt="" '
                'style="display:none">'
            )
            at = page.lower().rfind("</body>")
            page = page[:at] + pixel + page[at:] if at >= 0 else page + pixel
            rendered = replace(rendered, html=page)
        return Outgoing(
            dispatch_id=dispatch_id,
            customer_id=request.customer_id,
            channel=channel,
            address=decision.address,
            rendered=rendered,
            template_id=request.template_id,
            unsubscribe_url=unsubscribe,
            opened_url=signer.push_opened(dispatch_id) if channel is Channel.PUSH else None,
            attributes={
                "journeyId": request.journey_id,
                "stepId": request.step_id,
                "runId": request.run_id,
                "variant": request.variant,
                "context": request.context,
            },
        )


class _Lazy:
    """A link signed only if the template uses it (signing costs tens of µs)."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = self._make()
        return self._value

    def __html__(self) -> str:
        return html.escape(str(self))
