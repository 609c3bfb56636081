"""Profiles from identify/track/alias calls: merges, ordering, redelivery, erasure."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import orjson

from services.segmenter.metrics import EVENTS_SUPPRESSED
from tests.integration.segmenter.conftest import ADMIN, START, Stack
from tests.integration.segmenter.events import event, run_id


async def test_identify_and_track_build_the_profile(stack: Stack) -> None:
    customer = f"c-{run_id()}"
    await stack.send(
        event(
            "identify",
            customer,
            START - timedelta(days=3),
            traits={"email": "ada@example.com", "plan": "pro"},
            context={"timezone": "Europe/Paris", "locale": "fr-FR"},
        ),
        event(
            "track",
            customer,
            START - timedelta(days=2),
            event="Order Completed",
            properties={"revenue": 40},
        ),
        event(
            "track",
            customer,
            START - timedelta(days=1),
            event="Order Completed",
            properties={"revenue": 2.5},
        ),
        event("page", customer, START - timedelta(hours=5), name="Pricing"),
    )
    profile = await stack.profile(customer, until=lambda p: len(p["events"]) == 2)
    assert profile["traits"] == {"email": "ada@example.com", "plan": "pro"}
    assert (profile["timezone"], profile["locale"]) == ("Europe/Paris", "fr-FR")
    events = {e["event"]: e for e in profile["events"]}
    assert events["Order Completed"]["count"] == 2
    assert events["Order Completed"]["value_sum"] == 42.5
    assert events["Page Viewed"]["count"] == 1
    assert profile["first_seen_at"].startswith((START - timedelta(days=3)).date().isoformat())

    published = await stack.profiles.wait_for(
        lambda r: r.key == customer.encode() and b"ada@example.com" in r.value
    )
    message = orjson.loads(published.value)
    assert message["email"] == "ada@example.com"
    assert message["timezone"] == "Europe/Paris"
    assert message["version"] >= 1


async def test_traits_are_last_write_wins_by_event_time_not_arrival(stack: Stack) -> None:
    customer = f"c-{run_id()}"
    newer = event("identify", customer, START - timedelta(hours=1), traits={"plan": "pro"})
    older = event(
        "identify", customer, START - timedelta(days=1), traits={"plan": "free", "company": "Acme"}
    )
    await stack.send(newer)
    await stack.profile(customer, until=lambda p: p["traits"].get("plan") == "pro")
    await stack.send(older)  # arrives last, happened first
    profile = await stack.profile(customer, until=lambda p: "company" in p["traits"])
    assert profile["traits"] == {"plan": "pro", "company": "Acme"}


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_a_batch_of_track_events_keeps_the_traits_and_their_times(stack: Stack) -> None:
    """Batches that set no trait do not send the traits back: what is stored stays, and
    an older identify arriving afterwards still loses to the newer stored trait."""
    customer = f"c-{run_id()}"
    await stack.send(
        event(
            "identify",
            customer,
            START - timedelta(hours=2),
            traits={"plan": "pro"},
            context={"timezone": "Europe/Paris"},
        )
    )
    await stack.profile(customer, until=lambda p: p["traits"].get("plan") == "pro")
    await stack.send(event("track", customer, START - timedelta(hours=1), event="Signed In"))
    tracked = await stack.profile(customer, until=lambda p: len(p["events"]) == 1)
    assert tracked["last_seen_at"] == _iso(START - timedelta(hours=1))
    assert tracked["first_seen_at"] == _iso(START - timedelta(hours=2))
    await stack.send(
        event(
            "identify",
            customer,
            START - timedelta(days=1),
            traits={"plan": "free", "company": "Acme"},
        )
    )
    profile = await stack.profile(customer, until=lambda p: "company" in p["traits"])
    assert profile["traits"] == {"plan": "pro", "company": "Acme"}
    assert profile["timezone"] == "Europe/Paris"


async def test_a_null_trait_removes_it(stack: Stack) -> None:
    customer = f"c-{run_id()}"
    await stack.send(
        event(
            "identify", customer, START - timedelta(hours=2), traits={"coupon": "X1", "plan": "pro"}
        )
    )
    await stack.profile(customer, until=lambda p: "coupon" in p["traits"])
    await stack.send(
        event("identify", customer, START - timedelta(hours=1), traits={"coupon": None})
    )
    profile = await stack.profile(customer, until=lambda p: "coupon" not in p["traits"])
    assert profile["traits"] == {"plan": "pro"}


async def test_alias_merges_the_anonymous_history_into_the_known_customer(stack: Stack) -> None:
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await stack.send(
        event(
            "track", None, START - timedelta(days=2), anonymousId=anonymous, event="Product Viewed"
        ),
        event(
            "identify",
            None,
            START - timedelta(days=2),
            anonymousId=anonymous,
            traits={"utm_source": "ads"},
        ),
        event("identify", known, START - timedelta(days=1), traits={"email": "k@example.com"}),
    )
    await stack.profile(anonymous, until=lambda p: p["traits"].get("utm_source") == "ads")
    await stack.profile(known)
    await stack.send(event("alias", known, START - timedelta(hours=12), previousId=anonymous))
    merged = await stack.profile(known, until=lambda p: anonymous in p["aliases"])
    assert merged["traits"] == {"utm_source": "ads", "email": "k@example.com"}
    assert {e["event"]: e["count"] for e in merged["events"]} == {"Product Viewed": 1}
    # the merged traits reach profile consumers, with a version above the known id's last
    first = await stack.profiles.wait_for(lambda r: r.key == known.encode())
    republished = await stack.profiles.wait_for(
        lambda r: r.key == known.encode() and b"utm_source" in r.value
    )
    assert orjson.loads(republished.value)["traits"] == merged["traits"]
    assert orjson.loads(republished.value)["version"] > orjson.loads(first.value)["version"]

    via_old_id = await stack.profile(anonymous)
    assert via_old_id["customer_id"] == known
    assert via_old_id["requested_id"] == anonymous

    # later events under the anonymous id land on the merged profile
    await stack.send(
        event(
            "track", None, START - timedelta(hours=1), anonymousId=anonymous, event="Product Viewed"
        )
    )
    merged = await stack.profile(
        known,
        until=lambda p: {e["event"]: e["count"] for e in p["events"]}.get("Product Viewed") == 2,
    )
    deleted = await stack.profiles.wait_for(
        lambda r: r.key == anonymous.encode() and b'"deleted":true' in r.value
    )
    assert orjson.loads(deleted.value)["deleted"] is True


async def test_identify_with_both_ids_merges_and_announces_it(stack: Stack) -> None:
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await stack.send(
        event("track", None, START - timedelta(hours=3), anonymousId=anonymous, event="Cart Viewed")
    )
    await stack.profile(anonymous)
    # signing in: the SDK's identify carries the anonymous id and the user id
    await stack.send(
        event(
            "identify",
            known,
            START - timedelta(hours=2),
            anonymousId=anonymous,
            traits={"email": "k@example.com"},
        )
    )
    merged = await stack.profile(known, until=lambda p: anonymous in p["aliases"])
    assert merged["traits"] == {"email": "k@example.com"}
    announced = await stack.profiles.wait_for(
        lambda r: r.key == known.encode() and b"mergedFrom" in r.value
    )
    assert orjson.loads(announced.value)["mergedFrom"] == [anonymous]
    tombstone = await stack.profiles.wait_for(
        lambda r: r.key == anonymous.encode() and b'"deleted":true' in r.value
    )
    assert orjson.loads(tombstone.value)["mergedInto"] == known
    # the next identify with both ids is no new merge: no second announcement
    await stack.send(
        event(
            "identify",
            known,
            START - timedelta(hours=1),
            anonymousId=anonymous,
            traits={"plan": "pro"},
        )
    )
    latest = await stack.profiles.wait_for(
        lambda r: r.key == known.encode() and b'"plan"' in r.value
    )
    assert b"mergedFrom" not in latest.value
    # another user signing in on the same device is not merged with the first one
    other = f"u-{run_id()}"
    await stack.send(
        event(
            "identify",
            other,
            START - timedelta(minutes=30),
            anonymousId=anonymous,
            traits={"email": "o@example.com"},
        )
    )
    assert (await stack.profile(other))["aliases"] == []
    assert (await stack.profile(known))["traits"]["email"] == "k@example.com"


async def test_redelivered_events_change_nothing(stack: Stack) -> None:
    customer = f"c-{run_id()}"
    purchases = [
        event(
            "track",
            customer,
            START - timedelta(days=d),
            event="Order Completed",
            properties={"revenue": 10},
        )
        for d in (1, 2, 3)
    ]
    await stack.send(*purchases)
    await stack.profile(customer, until=lambda p: p["events"] and p["events"][0]["count"] == 3)
    await stack.send(*purchases)  # the same messageIds again, as after a producer retry
    marker = event("track", customer, START, event="Marker")
    await stack.send(marker)
    profile = await stack.profile(customer, until=lambda p: len(p["events"]) == 2)
    counts = {e["event"]: (e["count"], e["value_sum"]) for e in profile["events"]}
    assert counts == {"Order Completed": (3, 30.0), "Marker": (1, 0.0)}


async def test_erasure_removes_the_customer_and_says_so(stack: Stack) -> None:
    customer, anonymous = f"c-{run_id()}", f"anon-{run_id()}"
    await stack.send(
        event("identify", customer, START - timedelta(days=1), traits={"email": "x@example.com"}),
        event("alias", customer, START - timedelta(hours=20), previousId=anonymous),
    )
    await stack.profile(customer, until=lambda p: anonymous in p["aliases"])
    answer = await stack.client.delete(f"/v1/profiles/{customer}", headers=ADMIN)
    assert answer.status_code == 200
    assert sorted(answer.json()["erased_ids"]) == sorted([customer, anonymous])
    assert (await stack.client.get(f"/v1/profiles/{customer}", headers=ADMIN)).status_code == 404
    assert (await stack.client.get(f"/v1/profiles/{anonymous}", headers=ADMIN)).status_code == 404
    gone = await stack.profiles.wait_for(
        lambda r: r.key == customer.encode() and b'"deleted":true' in r.value
    )
    assert orjson.loads(gone.value)["customerId"] == customer
    again = await stack.client.delete(f"/v1/profiles/{customer}", headers=ADMIN)
    assert again.status_code == 404


async def _suppressed_events_after(before: float, more: int) -> None:
    """Until the consumer has dropped ``more`` events since ``before``."""
    for _ in range(200):
        if EVENTS_SUPPRESSED._value.get() >= before + more:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the consumer dropped {EVENTS_SUPPRESSED._value.get() - before} events")


async def test_erasure_with_suppression_drops_later_events_until_lifted(stack: Stack) -> None:
    customer, anonymous = f"c-{run_id()}", f"anon-{run_id()}"
    await stack.send(
        event("identify", customer, START - timedelta(days=1), traits={"email": "x@example.com"}),
        event("alias", customer, START - timedelta(hours=20), previousId=anonymous),
    )
    await stack.profile(customer, until=lambda p: anonymous in p["aliases"])
    answer = await stack.client.delete(f"/v1/profiles/{customer}?suppress=true", headers=ADMIN)
    assert answer.status_code == 200
    assert answer.json()["suppressed"] is True

    listed = await stack.client.get("/v1/suppressions", headers=ADMIN)
    reasons = {s["customer_id"]: s["reason"] for s in listed.json()["suppressions"]}
    assert (reasons.get(customer), reasons.get(anonymous)) == ("erased", "erased")

    dropped_before = EVENTS_SUPPRESSED._value.get()
    await stack.send(
        event("identify", customer, START, traits={"email": "back@example.com"}),
        event("track", None, START, anonymousId=anonymous, event="Product Viewed"),
    )
    await _suppressed_events_after(dropped_before, 2)
    for erased in (customer, anonymous):
        assert (await stack.client.get(f"/v1/profiles/{erased}", headers=ADMIN)).status_code == 404

    lifted = await stack.client.delete(f"/v1/suppressions/{customer}", headers=ADMIN)
    assert lifted.status_code == 204
    again = await stack.client.delete(f"/v1/suppressions/{customer}", headers=ADMIN)
    assert again.status_code == 404
    await stack.send(event("identify", customer, START, traits={"plan": "pro"}))
    back = await stack.profile(customer)
    assert back["traits"] == {"plan": "pro"}  # a new profile: nothing from before the erasure


async def test_erasing_an_unknown_id_with_suppression_still_suppresses(stack: Stack) -> None:
    customer = f"never-seen-{run_id()}"
    assert (await stack.client.delete(f"/v1/profiles/{customer}", headers=ADMIN)).status_code == 404
    answer = await stack.client.delete(f"/v1/profiles/{customer}?suppress=true", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "customer_id": customer,
        "erased_ids": [],
        "exited_segments": [],
        "suppressed": True,
    }
    listed = await stack.client.get("/v1/suppressions", headers=ADMIN)
    reasons = {s["customer_id"]: s["reason"] for s in listed.json()["suppressions"]}
    assert reasons.get(customer) == "erased"

    dropped_before = EVENTS_SUPPRESSED._value.get()
    await stack.send(event("identify", customer, START, traits={"email": "late@example.com"}))
    await _suppressed_events_after(dropped_before, 1)
    assert (await stack.client.get(f"/v1/profiles/{customer}", headers=ADMIN)).status_code == 404


async def test_suppressing_without_erasure_freezes_the_profile(stack: Stack) -> None:
    customer = f"c-{run_id()}"
    await stack.send(
        event("identify", customer, START - timedelta(days=1), traits={"plan": "free"})
    )
    await stack.profile(customer)
    bad = await stack.client.put(
        f"/v1/suppressions/{customer}", headers=ADMIN, json={"reason": "", "extra": 1}
    )
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["errors"]} == {
        ("body", "reason"),
        ("body", "extra"),
    }
    put = await stack.client.put(
        f"/v1/suppressions/{customer}", headers=ADMIN, json={"reason": "legal hold"}
    )
    assert (put.status_code, put.json()["reason"]) == (200, "legal hold")
    # idempotent: the first suppression stays
    assert (
        await stack.client.put(f"/v1/suppressions/{customer}", headers=ADMIN)
    ).json() == put.json()

    dropped_before = EVENTS_SUPPRESSED._value.get()
    await stack.send(event("identify", customer, START, traits={"plan": "pro"}))
    await _suppressed_events_after(dropped_before, 1)
    assert (await stack.profile(customer))["traits"] == {"plan": "free"}
    assert (await stack.client.get("/v1/suppressions")).status_code == 401
