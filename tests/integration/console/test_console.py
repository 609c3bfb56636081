"""The console against the five real services: sign-in, CSRF, CSP and logout, and each
page rendering what the services hold."""

from __future__ import annotations

import json
import re
import uuid
from contextlib import closing
from urllib.parse import quote, unquote

import httpx

from services.console.security import CONTENT_SECURITY_POLICY
from tests.integration.console.conftest import (
    ADMIN_TOKEN,
    Browser,
    Stack,
    csrf_of,
    sign_in,
)

# --- sign-in, CSRF, CSP, logout ----------------------------------------------------------


def test_pages_need_a_session_and_sign_in_takes_only_a_valid_token(stack: Stack) -> None:
    with httpx.Client(base_url=stack.console) as client:
        answer = client.get("/customers/ada?x=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=/customers/ada%3Fx%3D1"
        page = client.get("/login")
        csrf = csrf_of(page.text)
        wrong = client.post("/login", data={"token": "not-the-token", "csrf": csrf})
        assert wrong.status_code == 401
        assert "This admin token is not valid." in wrong.text
        assert "tenure_console=" not in wrong.headers.get("set-cookie", "")
        # without the sign-in form's CSRF token (a cross-site login), refused
        forged = client.post("/login", data={"token": ADMIN_TOKEN, "csrf": "forged"})
        assert forged.status_code == 403
        # a `next` to another site is not followed (no open redirect)
        signed = client.post(
            "/login", data={"token": ADMIN_TOKEN, "csrf": csrf, "next": "//evil.example/x"}
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/customers"
        assert client.get("/customers").status_code == 200


def test_the_session_cookie_is_httponly_strict_and_sealed(stack: Stack) -> None:
    with httpx.Client(base_url=stack.console) as client:
        csrf = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"token": ADMIN_TOKEN, "csrf": csrf})
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("tenure_console=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        value = cookie.split(";")[0].split("=", 1)[1]
        assert ADMIN_TOKEN not in value  # encrypted, not only signed
        # a cookie altered by one character opens no session
        tampered = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
        client.cookies.clear()
        client.cookies.set("tenure_console", tampered)
        assert client.get("/customers").status_code == 303


def test_every_page_has_a_strict_csp_and_no_inline_script(stack: Stack, browser: Browser) -> None:
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    for path in (
        "/login",
        "/customers",
        f"/customers/{stack.customer}",
        "/segments",
        "/segments/new",
        "/templates",
        "/journeys",
        "/report",
        "/settings",
        "/journeys/new",
        "/templates/new",
    ):
        answer = browser.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        # every script has a src (served by the console), no inline handlers or styles
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text), path
        assert not re.search(r"\son[a-z]+=", answer.text), path
        assert " style=" not in answer.text, path
    script = browser.get("/static/console.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def test_a_form_without_the_session_csrf_token_changes_nothing(
    stack: Stack, browser: Browser
) -> None:
    refused = browser.post(
        f"/customers/{stack.customer}/erase", data={"confirm": stack.customer, "csrf": "x"}
    )
    assert refused.status_code == 403
    assert browser.post("/logout").status_code == 403
    # a JSON call with no X-CSRF-Token header neither
    assert browser.post("/segments/preview", json={"rule": {}}).status_code == 403
    with stack.api("segmenter") as segmenter:
        assert segmenter.get(f"/v1/profiles/{stack.customer}").status_code == 200
    assert browser.get("/customers").status_code == 200  # still signed in


def test_logout_ends_the_session(stack: Stack) -> None:
    with closing(sign_in(stack.console)) as client:
        answer = client.post("/logout", data={"csrf": client.csrf})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?note=signed-out"
        assert 'tenure_console=""' in answer.headers["set-cookie"]
        assert client.get("/customers").status_code == 303
        assert "You are signed out." in client.get("/login?note=signed-out").text


# --- customers -------------------------------------------------------------------------


def test_search_finds_a_customer_by_id_or_by_email(stack: Stack, browser: Browser) -> None:
    found = browser.get("/customers", params={"q": stack.customer})
    assert found.status_code == 303
    assert found.headers["location"] == f"/customers/{stack.customer}"
    by_email = browser.get("/customers", params={"q": stack.email})
    assert by_email.status_code == 303
    assert by_email.headers["location"] == f"/customers/{stack.customer}"
    nobody = browser.get("/customers", params={"q": "nobody@example.com"})
    assert nobody.status_code == 200
    assert "No customer with the id or email &#39;nobody@example.com&#39;." in nobody.text
    assert "No customer with the id" in browser.get("/customers", params={"q": "zz"}).text


def test_the_profile_page_shows_what_every_service_holds(stack: Stack, browser: Browser) -> None:
    page = browser.get(f"/customers/{stack.customer}")
    assert page.status_code == 200
    html = page.text
    assert stack.email in html
    # traits are escaped, never markup
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html and "<b>Lovelace" not in html
    assert "Order Completed" in html
    for section in ("traits", "memberships", "events", "loyalty", "recommendations", "runs"):
        assert f'id="{section}"' in html
    # the dispatcher answered: its preferences form is there, with a CSRF token
    assert f'action="/customers/{stack.customer}/preferences"' in html
    assert "Could not read" not in html
    assert browser.get("/customers/nobody-at-all").status_code == 404


def test_preferences_are_saved_through_the_dispatcher(stack: Stack, browser: Browser) -> None:
    answer = browser.post(
        f"/customers/{stack.customer}/preferences",
        data={"csrf": browser.csrf, "channel_email": "on", "channel_webhook": "on"},
    )
    assert answer.status_code == 303
    with stack.api("dispatcher") as dispatcher:
        saved = dispatcher.get(f"/v1/customers/{stack.customer}/preferences").json()
    assert saved["unsubscribed"] is False
    assert saved["channels"]["email"] is True and saved["channels"]["push"] is False


def test_erase_asks_for_the_id_then_erases(stack: Stack, browser: Browser) -> None:
    bob = f"bob-{uuid.uuid4().hex[:8]}"
    stack.track(bob, "Signed Up")
    with stack.api("segmenter") as segmenter:
        stack.until(lambda: segmenter.get(f"/v1/profiles/{bob}").status_code == 200)
        confirm = browser.get(f"/customers/{bob}/erase")
        assert confirm.status_code == 200 and "cannot be undone" in confirm.text
        wrong = browser.post(f"/customers/{bob}/erase", data={"csrf": browser.csrf, "confirm": "b"})
        assert wrong.status_code == 422 and "Type the customer" in wrong.text
        assert segmenter.get(f"/v1/profiles/{bob}").status_code == 200
        done = browser.post(f"/customers/{bob}/erase", data={"csrf": browser.csrf, "confirm": bob})
        assert done.status_code == 303
        assert segmenter.get(f"/v1/profiles/{bob}").status_code == 404
    assert "The customer was erased." in browser.get(done.headers["location"]).text


# --- segments --------------------------------------------------------------------------


def _leaf(browser: Browser, **fields: str) -> httpx.Response:
    data = {
        "csrf": browser.csrf,
        "action": "leaf",
        "name": "Repeat buyers",
        "description": "",
        "rule": "",
        "leaf_event": "Order Completed",
        "leaf_op": "gte",
        "leaf_count": "2",
        "leaf_days": "30",
    }
    return browser.post("/segments/new", data=data | fields)


def test_the_structured_leaf_previews_the_live_count_and_a_sample(
    stack: Stack, browser: Browser
) -> None:
    answer = _leaf(browser)
    assert answer.status_code == 200, answer.text
    assert "1 customers match now" in answer.text
    assert f'href="/customers/{stack.customer}"' in answer.text
    assert "&#34;within_days&#34;: 30" in answer.text  # the rule it made, in the JSON editor
    nobody = _leaf(browser, leaf_count="3")
    assert "0 customers match now" in nobody.text


def test_validation_errors_are_shown_next_to_the_rule(stack: Stack, browser: Browser) -> None:
    bad_leaf = _leaf(browser, leaf_count="two")
    assert bad_leaf.status_code == 422
    assert 'id="leaf-error"' in bad_leaf.text and "count must be a whole number" in bad_leaf.text
    data = {"csrf": browser.csrf, "action": "preview", "name": "x"}
    refused = browser.post(
        "/segments/new",
        data=data | {"rule": '{"kind": "event_count", "event": "X", "op": "gte", "count": -1}'},
    )
    assert refused.status_code == 422
    errors = re.findall(r'<p class="field-error" id="rule-error">([^<]*)</p>', refused.text)
    assert errors and "count" in errors[0], refused.text
    not_json = browser.post("/segments/new", data=data | {"rule": "{oops"})
    assert not_json.status_code == 422 and "not JSON" in not_json.text


def test_the_scripts_preview_call(stack: Stack, browser: Browser) -> None:
    rule = {"kind": "event_count", "event": "Order Completed", "op": "gte", "count": 2}
    headers = {"X-CSRF-Token": browser.csrf}
    answer = browser.post("/segments/preview", json={"rule": rule}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["count"] == 1 and answer.json()["sample"] == [stack.customer]
    bad = browser.post("/segments/preview", json={"rule": {"kind": "nope"}}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"]["rule"]


def test_a_segment_is_saved_listed_and_edited(stack: Stack, browser: Browser) -> None:
    segment_id = f"repeat-{uuid.uuid4().hex[:6]}"
    saved = _leaf(browser, action="save", id=segment_id, rule=_rule(2))
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/segments/{segment_id}?note=segment-saved"
    taken = _leaf(browser, action="save", id=segment_id, rule=_rule(2))
    assert taken.status_code == 422 and 'id="id-error"' in taken.text
    listed = browser.get("/segments").text
    assert f'href="/segments/{segment_id}"' in listed
    with stack.api("segmenter") as segmenter:
        stack.until(lambda: segmenter.get(f"/v1/segments/{segment_id}").json()["members"] == 1)
    page = browser.get(f"/segments/{segment_id}")
    assert page.status_code == 200 and f'href="/customers/{stack.customer}"' in page.text
    after = browser.get(f"/segments/{segment_id}", params={"after": stack.customer})
    assert f'href="/customers/{stack.customer}"' not in after.text  # the next page: empty
    edited = browser.post(
        f"/segments/{segment_id}",
        data={"csrf": browser.csrf, "action": "save", "name": "Repeat buyers", "rule": _rule(1)},
    )
    assert edited.status_code == 303
    with stack.api("segmenter") as segmenter:
        assert segmenter.get(f"/v1/segments/{segment_id}").json()["version"] == 2
    profile = browser.get(f"/customers/{stack.customer}").text
    assert f'href="/segments/{segment_id}"' in profile


def _rule(count: int) -> str:
    return (
        '{"kind": "event_count", "event": "Order Completed", "op": "gte", '
        f'"count": {count}, "within_days": 30}}'
    )


# --- templates -------------------------------------------------------------------------


def _definition(subject: str) -> str:
    return (
        '{"name": "Thanks", "variants": [{"channel": "email", "subject": '
        f'"{subject}", "html": "<p>Hi {{{{ customer.traits.plan }}}}</p>"}}]}}'
    )


def test_templates_are_created_previewed_for_a_customer_and_versioned(
    stack: Stack, browser: Browser
) -> None:
    template_id = f"thanks-{uuid.uuid4().hex[:6]}"
    broken = browser.post(
        "/templates/new",
        data={"csrf": browser.csrf, "id": template_id, "definition": _definition("{{ oops")},
    )
    assert broken.status_code == 422
    assert 'id="definition-error"' in broken.text and "compile" in broken.text
    created = browser.post(
        "/templates/new",
        data={
            "csrf": browser.csrf,
            "id": template_id,
            "definition": _definition("Thanks {{ customer.traits.name }}"),
        },
    )
    assert created.status_code == 303, created.text
    assert template_id in browser.get("/templates").text

    def preview() -> httpx.Response | None:
        answer = browser.post(
            f"/templates/{template_id}/preview",
            data={"csrf": browser.csrf, "customer_id": stack.customer, "channel": "email"},
        )
        # until the dispatcher's projection of profiles knows the customer
        return None if 'id="customer_id-error"' in answer.text else answer

    rendered = stack.until(preview)
    assert rendered.status_code == 200, rendered.text
    assert "Thanks Ada &lt;b&gt;Lovelace&lt;/b&gt;" in rendered.text
    assert 'sandbox srcdoc="' in rendered.text and "Hi pro" in rendered.text
    # a new version that fails for this customer: the render error is shown inline
    saved = browser.post(
        f"/templates/{template_id}",
        data={"csrf": browser.csrf, "definition": _definition("{{ customer.traits.nope }}")},
    )
    assert saved.status_code == 303
    failing = browser.post(
        f"/templates/{template_id}/preview",
        data={"csrf": browser.csrf, "customer_id": stack.customer, "version": "2"},
    )
    assert failing.status_code == 422
    assert "Render error" in failing.text and "nope" in failing.text
    assert "v2" in browser.get(f"/templates/{template_id}").text
    unknown = browser.post(
        f"/templates/{template_id}/preview",
        data={"csrf": browser.csrf, "customer_id": "no-such-customer", "version": "1"},
    )
    assert unknown.status_code == 422 and 'id="customer_id-error"' in unknown.text


def test_a_test_send_goes_out_through_the_dispatcher(stack: Stack, browser: Browser) -> None:
    template_id = f"hello-{uuid.uuid4().hex[:6]}"
    with stack.api("dispatcher") as dispatcher:
        dispatcher.post(
            "/v1/templates",
            json={
                "id": template_id,
                "definition": {
                    "name": "Hello",
                    "variants": [{"channel": "email", "subject": "Hello", "text": "Hi"}],
                },
            },
        ).raise_for_status()
    before = stack.smtp.count

    def sent() -> httpx.Response | None:
        answer = browser.post(
            f"/templates/{template_id}/preview",
            data={"csrf": browser.csrf, "customer_id": stack.customer, "action": "send"},
        )
        return answer if "badge sent" in answer.text else None

    assert stack.until(sent).status_code == 200
    assert stack.smtp.count > before


# --- journeys --------------------------------------------------------------------------


def test_a_journey_page_shows_its_diagram_and_its_buttons_work(
    stack: Stack, browser: Browser
) -> None:
    journey_id = f"welcome-{uuid.uuid4().hex[:6]}"
    with stack.api("journey") as journey:
        journey.post(
            "/v1/journeys",
            json={
                "id": journey_id,
                "name": "Welcome",
                "definition": {
                    "triggers": [{"kind": "event", "event": "Signed Up"}],
                    "steps": [
                        {"id": "pause", "type": "wait", "duration": "P1D", "next": "done"},
                        {"id": "done", "type": "exit"},
                    ],
                },
            },
        ).raise_for_status()
    page = browser.get(f"/journeys/{journey_id}")
    assert page.status_code == 200
    assert "badge draft" in page.text and "flowchart TD" in page.text
    assert f'href="/journeys/{journey_id}"' in browser.get("/journeys").text
    for action, state in (("publish", "active"), ("pause", "paused"), ("resume", "active")):
        moved = browser.post(f"/journeys/{journey_id}/{action}", data={"csrf": browser.csrf})
        assert moved.status_code == 303, moved.text
        assert f"badge {state}" in browser.get(moved.headers["location"]).text
    stack.track(stack.customer, "Signed Up")
    with stack.api("journey") as journey:
        stack.until(lambda: journey.get(f"/v1/journeys/{journey_id}/runs").json()["runs"])
    runs_page = browser.get(f"/journeys/{journey_id}").text
    assert f'href="/customers/{stack.customer}"' in runs_page
    # the Mermaid text, shown as text, labels the step with its live counts
    assert "entered 1 · waiting 1 · converted 0 · exited 0" in runs_page
    assert 'class="mermaid-source"' in runs_page
    # the list's live counts: one run in flight (the service's summaries, one query)
    row = re.search(rf'href="/journeys/{journey_id}">.*?</tr>', browser.get("/journeys").text, re.S)
    assert row is not None
    assert re.findall(r'<td class="num">([^<]*)</td>', row.group(0))[:2] == ["1", "1"]
    profile = browser.get(f"/customers/{stack.customer}").text
    assert f'href="/journeys/{journey_id}"' in profile
    # the run's step history, from the journey service's run_steps
    with stack.api("journey") as journey:
        runs = journey.get(f"/v1/customers/{stack.customer}/runs", params={"steps": "true"}).json()[
            "runs"
        ]
    mine = next(r for r in runs if r["journey_id"] == journey_id)
    kinds = [(s["kind"], s["step_id"]) for s in mine["steps"]]
    assert kinds[0][0] == "entered" and ("step_reached", "pause") in kinds
    assert [s["seq"] for s in mine["steps"]] == sorted(s["seq"] for s in mine["steps"])
    assert "Step history" in profile and "<strong>pause</strong>" in profile
    # the runs section pages by run id (``runs_after``, the journey API's cursor)
    later = browser.get(f"/customers/{stack.customer}", params={"runs_after": "~"}).text
    assert (
        f'href="/journeys/{journey_id}"' not in later.split('id="runs"')[1].split("</section>")[0]
    )
    archived = browser.post(f"/journeys/{journey_id}/archive", data={"csrf": browser.csrf})
    assert "badge archived" in browser.get(archived.headers["location"]).text
    refused = browser.post(f"/journeys/{journey_id}/pause", data={"csrf": browser.csrf})
    assert refused.status_code == 409  # the journey service's answer, as a page
    # archiving ended the run: its history says so
    with stack.api("journey") as journey:
        runs = journey.get(f"/v1/customers/{stack.customer}/runs", params={"steps": "true"}).json()[
            "runs"
        ]
    last = next(r for r in runs if r["journey_id"] == journey_id)["steps"][-1]
    assert (last["kind"], last["exit_reason"]) == ("exited", "archived")


# --- the report ------------------------------------------------------------------------


def test_the_report_shows_metrics_kpis(stack: Stack, browser: Browser) -> None:
    with stack.api("metrics") as metrics:
        stack.until(
            lambda: any(p["active"] for p in metrics.get("/v1/kpis/activity").json()["periods"])
        )
        metrics.post(
            "/v1/objectives",
            json={
                "name": "Grow the base",
                "metric": "active_customers",
                "target": 1000,
                "start": "2026-01-01",
                "deadline": "2027-12-31",
            },
        ).raise_for_status()
    page = browser.get("/report")
    assert page.status_code == 200
    assert "Grow the base" in page.text
    assert re.search(
        r'id="cohorts">.*<tr><td>\d{4}-\d{2}-01</td><td class="num">\d+', page.text, re.S
    )
    assert 'id="experiments"' in page.text
    rows = re.findall(r"<tr><td>(\d{4}-\d{2}-\d{2})</td><td class=\"num\">(\d+)</td>", page.text)
    assert rows and any(int(active) >= 1 for _, active in rows), page.text
    assert 'id="funnel"' in page.text and "Could not read" not in page.text
    bad = browser.get("/report", params={"start": "2026-02-01", "end": "2025-01-01"})
    assert bad.status_code == 200 and "metrics:" in bad.text  # metrics' 422, in its section


def test_a_journey_is_written_validated_and_simulated_in_the_console(
    stack: Stack, browser: Browser
) -> None:
    journey_id = f"thanks-{uuid.uuid4().hex[:6]}"
    steps = [
        {"id": "pause", "type": "wait", "duration": "PT1H", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
    definition = {"triggers": [{"kind": "event", "event": "Order Completed"}], "steps": steps}
    created = browser.post(
        "/journeys/new",
        data={
            "csrf": browser.csrf,
            "id": journey_id,
            "name": "Thanks",
            "definition": json.dumps(definition),
        },
    )
    assert created.status_code == 303, created.text
    # a step going nowhere: the error names the step by its id
    broken = definition | {"steps": [steps[0] | {"next": "nowhere"}, steps[1]]}
    refused = browser.post(
        f"/journeys/{journey_id}/draft",
        data={"csrf": browser.csrf, "action": "validate", "definition": json.dumps(broken)},
    )
    assert refused.status_code == 422
    errors = re.findall(r'<p class="field-error" id="definition-error">([^<]*)</p>', refused.text)
    assert errors and any("nowhere" in e for e in errors), refused.text
    # a field of a step: the error says which step by its id, not only its index
    bad_wait = definition | {"steps": [steps[0] | {"duration": "soon"}, steps[1]]}
    refused = browser.post(
        f"/journeys/{journey_id}/draft",
        data={"csrf": browser.csrf, "action": "save", "definition": json.dumps(bad_wait)},
    )
    assert refused.status_code == 422
    assert "step &#34;pause&#34; (steps.0) wait.duration:" in refused.text, refused.text
    valid = browser.post(
        f"/journeys/{journey_id}/draft",
        data={"csrf": browser.csrf, "action": "validate", "definition": json.dumps(definition)},
    )
    assert valid.status_code == 200 and "Valid: 2 steps" in valid.text
    history = [{"at": "2026-06-01T12:00:00Z", "event": "Order Completed", "properties": {}}]
    simulated = browser.post(
        f"/journeys/{journey_id}/simulate",
        data={"csrf": browser.csrf, "history": json.dumps(history)},
    )
    assert simulated.status_code == 200, simulated.text
    assert re.search(r"<td data-path>pause → done</td>", simulated.text), simulated.text
    page = browser.get(f"/journeys/{journey_id}").text
    assert 'id="uplift"' in page and "Could not read" not in page


PROGRAM = {
    "rules": [{"kind": "per_event", "id": "review", "event": "Review", "points": 5}],
    "tiers": [{"name": "Member", "min_points": 0}, {"name": "Gold", "min_points": 50}],
}


def test_scores_loyalty_and_recommendations_on_the_profile(stack: Stack, browser: Browser) -> None:
    """With every section filled: churn risk after a refit, loyalty points, and
    recommendations with their "because"."""
    others = [f"cleo-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    shoes = [{"product_id": "shoe-1", "category": "shoes"}]
    both = shoes + [{"product_id": "sock-1", "category": "socks"}]
    with stack.api("segmenter") as segmenter:
        segmenter.put("/v1/loyalty/program", json=PROGRAM).raise_for_status()
        for other in others:
            stack.track(other, "Order Completed", revenue=10, products=both)
        stack.track(stack.customer, "Order Completed", revenue=20, products=shoes)
        stack.track(stack.customer, "Review")
        stack.until(
            lambda: segmenter.get(f"/v1/loyalty/{stack.customer}").json().get("points") == 5
        )
        for other in others:

            def profiled(o: str = other) -> bool:
                return bool(segmenter.get(f"/v1/profiles/{o}").status_code == 200)

            stack.until(profiled)
        stack.until(
            lambda: any(
                e["count"] == 3
                for e in segmenter.get(f"/v1/profiles/{stack.customer}").json()["events"]
            )
        )
        segmenter.post("/v1/recommendations/recompute").raise_for_status()
        segmenter.post("/v1/scores/refit").raise_for_status()
    page = browser.get(f"/customers/{stack.customer}")
    assert page.status_code == 200, page.text
    assert "5 pts · Member" in page.text
    assert re.search(r"Churn risk</div><div class=\"value\">\d+\.\d %", page.text), page.text
    assert re.search(r"<td>sock-1</td>.*shoe-1 \(purchase ×1\)", page.text, re.S), page.text
    assert "Why these scores" in page.text


# --- settings --------------------------------------------------------------------------


def test_settings_show_policy_topics_pools_and_loyalty_and_save_the_policy(
    stack: Stack, browser: Browser
) -> None:
    with stack.api("dispatcher") as dispatcher, stack.api("segmenter") as segmenter:
        dispatcher.put("/v1/topics/offers", json={"name": "Offers"}).raise_for_status()
        pool = f"spring-{uuid.uuid4().hex[:6]}"
        dispatcher.post(
            "/v1/coupon-pools", json={"id": pool, "name": "Spring", "low_water": 1}
        ).raise_for_status()
        dispatcher.post(
            f"/v1/coupon-pools/{pool}/codes", json={"codes": ["A-1", "A-2", "A-3"]}
        ).raise_for_status()
        segmenter.put("/v1/loyalty/program", json=PROGRAM).raise_for_status()
        page = browser.get("/settings")
        assert page.status_code == 200, page.text
        assert "Could not read" not in page.text
        assert re.search(
            rf"Spring <span class=\"muted\">{pool}</span></td>\s*<td class=\"num\">3<", page.text
        )
        assert "<td>offers</td><td>Offers</td>" in page.text
        assert '<td>Gold</td><td class="num">50</td>' in page.text
        policy = dispatcher.get("/v1/policy").json()
        wrong = policy | {"quiet_hours": policy["quiet_hours"] | {"start": "25:00"}}
        refused = browser.post(
            "/settings/policy", data={"csrf": browser.csrf, "policy": json.dumps(wrong)}
        )
        assert refused.status_code == 422 and 'id="policy-error"' in refused.text
        changed = policy | {"quiet_hours": policy["quiet_hours"] | {"start": "22:30:00"}}
        saved = browser.post(
            "/settings/policy", data={"csrf": browser.csrf, "policy": json.dumps(changed)}
        )
        assert saved.status_code == 303
        assert dispatcher.get("/v1/policy").json()["quiet_hours"]["start"] == "22:30:00"


def test_a_journey_made_in_the_console_sends_and_its_counts_rise(
    stack: Stack, browser: Browser
) -> None:
    """Template and journey written in the console, published with its button, triggered
    through ingest: the step's count rises on the journey's page, the email arrives, and
    the delivery is on the customer's page."""
    suffix = uuid.uuid4().hex[:6]
    template_id, journey_id, trigger = f"hi-{suffix}", f"hi-{suffix}", f"Trial Started {suffix}"
    definition = {"name": "Hi", "variants": [{"channel": "email", "subject": "Hi", "text": "Hi"}]}
    made = browser.post(
        "/templates/new",
        data={"csrf": browser.csrf, "id": template_id, "definition": json.dumps(definition)},
    )
    assert made.status_code == 303, made.text
    journey = {
        "triggers": [{"kind": "event", "event": trigger}],
        "steps": [
            {
                "id": "hello",
                "type": "send",
                "channels": ["email"],
                "template_id": template_id,
                "priority": "critical",  # no quiet hours in the way, whatever the hour
                "next": "done",
            },
            {"id": "done", "type": "exit"},
        ],
    }
    made = browser.post(
        "/journeys/new",
        data={
            "csrf": browser.csrf,
            "id": journey_id,
            "name": "Hi",
            "definition": json.dumps(journey),
        },
    )
    assert made.status_code == 303, made.text
    published = browser.post(f"/journeys/{journey_id}/publish", data={"csrf": browser.csrf})
    assert published.status_code == 303
    before = stack.smtp.count
    stack.track(stack.customer, trigger)

    def entered() -> bool:
        page = browser.get(f"/journeys/{journey_id}").text
        row = re.search(r'<tr data-step="hello"><td>hello</td>\s*<td class="num"[^>]*>(\d+)<', page)
        return bool(row and int(row.group(1)) >= 1)

    stack.until(entered)
    live = browser.get(f"/journeys/{journey_id}/counts")  # what the page's script reads
    assert live.status_code == 200 and live.json()["counts"]["hello"]["entered"] >= 1
    stack.until(lambda: stack.smtp.count > before)
    profile = stack.until(
        lambda: (
            (text := browser.get(f"/customers/{stack.customer}").text)
            and f'href="/templates/{template_id}"' in text
            and text
        )
    )
    row = rf"{template_id}</a> v1</td>\s*<td>{journey_id} · hello</td>\s*"
    assert re.search(row + r'<td><span class="badge sent">', profile), profile


def test_the_per_channel_form_saves_a_version_with_a_new_variant(
    stack: Stack, browser: Browser
) -> None:
    template_id = f"cart-{uuid.uuid4().hex[:6]}"
    with stack.api("dispatcher") as dispatcher:
        dispatcher.post(
            "/v1/templates",
            json={
                "id": template_id,
                "definition": {
                    "name": "Cart",
                    "variants": [{"channel": "email", "subject": "Your cart", "text": "Hi"}],
                },
            },
        ).raise_for_status()
        page = browser.get(f"/templates/{template_id}").text
        assert 'name="variant-0-subject" value="Your cart"' in page
        assert 'name="variant-1-channel"' in page  # the blank one, to add a variant
        form = {
            "csrf": browser.csrf,
            "version": "1",
            "name": "Cart reminder",
            "variant-0-channel": "email",
            "variant-0-locale": "",
            "variant-0-subject": "{{ oops",
            "variant-0-text": "Hi",
            "variant-1-channel": "push",
            "variant-1-locale": "fr",
            "variant-1-title": "Votre panier",
            "variant-1-text": "Il vous attend",
        }
        broken = browser.post(f"/templates/{template_id}/variants", data=form)
        assert broken.status_code == 422
        assert 'id="variants-error"' in broken.text and "compile" in broken.text
        assert dispatcher.get(f"/v1/templates/{template_id}").json()["latest_version"] == 1
        saved = browser.post(
            f"/templates/{template_id}/variants",
            data=form | {"variant-0-subject": "Your cart, {{ customer.traits.plan }}"},
        )
        assert saved.status_code == 303, saved.text
        stored = dispatcher.get(f"/v1/templates/{template_id}").json()
    assert stored["version"] == 2 and stored["definition"]["name"] == "Cart reminder"
    email, push = stored["definition"]["variants"]
    assert email["subject"] == "Your cart, {{ customer.traits.plan }}" and email["text"] == "Hi"
    assert (push["channel"], push["locale"], push["title"]) == ("push", "fr", "Votre panier")
    assert push.get("subject") is None


# --- ids holding reserved characters ------------------------------------------------------

#: a customer id with a slash, a space, ``?`` and ``#``: every path it is in is
#: percent-encoded, and every route taking it matches it whole (``{customer_id:path}``)
ODD_ID = f"acme/user 1?#-{uuid.uuid4().hex[:6]}"


def _odd_customer(stack: Stack) -> str:
    """The customer ``ODD_ID``, known to the segmenter (once per module)."""
    with stack.api("segmenter") as segmenter:
        if segmenter.get(f"/v1/profiles/{quote(ODD_ID, safe='')}").status_code != 200:
            stack.track(ODD_ID, "Order Completed", revenue=5, orderId=f"o-{ODD_ID}")
            stack.until(
                lambda: segmenter.get(f"/v1/profiles/{quote(ODD_ID, safe='')}").status_code == 200
            )
    return quote(ODD_ID, safe="")


def test_segmenter_routes_take_an_id_with_a_slash(stack: Stack) -> None:
    path = _odd_customer(stack)
    with stack.api("segmenter") as segmenter:
        assert segmenter.get(f"/v1/profiles/{path}").json()["customer_id"] == ODD_ID
        # answered by the route (a standing, or the service's own 404 naming the id),
        # not by the router's "Not Found"
        for read in (f"/v1/loyalty/{path}", f"/v1/recommendations/{path}"):
            answer = segmenter.get(read)
            assert answer.status_code in (200, 404), answer.text
            assert answer.json().get("detail") != "Not Found", read
        # the loyalty program's own route is not taken for an id
        assert segmenter.get("/v1/loyalty/program").status_code in (200, 404)
        other = quote(f"x/{uuid.uuid4().hex[:6]}", safe="")
        suppressed = segmenter.put(f"/v1/suppressions/{other}")
        assert suppressed.status_code == 200, suppressed.text
        assert suppressed.json()["customer_id"] == unquote(other)
        assert segmenter.delete(f"/v1/suppressions/{other}").status_code == 204


def test_dispatcher_routes_take_an_id_with_a_slash(stack: Stack) -> None:
    path = _odd_customer(stack)
    with stack.api("dispatcher") as dispatcher:
        saved = dispatcher.patch(
            f"/v1/customers/{path}/preferences", json={"channels": {"push": False}}
        )
        assert saved.status_code == 200, saved.text
        read = dispatcher.get(f"/v1/customers/{path}/preferences").json()
        assert read["channels"]["push"] is False
        deliveries = dispatcher.get(f"/v1/customers/{path}/deliveries")
        assert deliveries.status_code == 200 and deliveries.json() == []


def test_journey_routes_take_an_id_with_a_slash(stack: Stack) -> None:
    path = _odd_customer(stack)
    with stack.api("journey") as journey:
        runs = journey.get(f"/v1/customers/{path}/runs")
        assert runs.status_code == 200, runs.text
        assert runs.json()["runs"] == []


def test_the_console_reaches_a_customer_whose_id_holds_a_slash(
    stack: Stack, browser: Browser
) -> None:
    path = _odd_customer(stack)
    found = browser.get("/customers", params={"q": ODD_ID})
    assert found.status_code == 303
    assert found.headers["location"] == f"/customers/{path}"
    page = browser.get(f"/customers/{path}")
    assert page.status_code == 200, page.text
    assert "Could not read" not in page.text
    assert f'action="/customers/{path}/preferences"' in page.text
    assert f'href="/customers/{path}/erase"' in page.text
    saved = browser.post(
        f"/customers/{path}/preferences", data={"csrf": browser.csrf, "channel_email": "on"}
    )
    assert saved.status_code == 303
    assert saved.headers["location"].startswith(f"/customers/{path}?")
    erase = browser.get(f"/customers/{path}/erase")
    assert erase.status_code == 200 and "cannot be undone" in erase.text


# --- paging ----------------------------------------------------------------------------


def _walk(browser: Browser, path: str, prefix: str) -> list[list[str]]:
    """The ids under ``prefix`` linked from each page of a list, following Next."""
    pages: list[list[str]] = []
    url: str | None = path
    while url is not None:
        html = browser.get(url).text
        assert html.count("<tr>") <= 50 + 1, url  # 50 rows and the heading
        pages.append(re.findall(rf'href="{path}/({prefix}[^"?/]*)"', html))
        nxt = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    return pages


def test_lists_page_by_fifty_and_never_ask_for_a_whole_table(
    stack: Stack, browser: Browser
) -> None:
    prefix = f"zz-{uuid.uuid4().hex[:4]}-"
    ids = [f"{prefix}{n:02d}" for n in range(51)]
    with (
        stack.api("journey") as journey,
        stack.api("dispatcher") as dispatcher,
        stack.api("segmenter") as segmenter,
    ):
        for i in ids:
            journey.post(
                "/v1/journeys",
                json={
                    "id": i,
                    "name": i,
                    "definition": {
                        "triggers": [{"kind": "event", "event": "Never"}],
                        "steps": [{"id": "done", "type": "exit"}],
                    },
                },
            ).raise_for_status()
            dispatcher.post(
                "/v1/templates",
                json={
                    "id": i,
                    "definition": {
                        "name": i,
                        "variants": [{"channel": "email", "subject": "S", "text": "T"}],
                    },
                },
            ).raise_for_status()
            segmenter.post(
                "/v1/segments",
                json={
                    "id": i,
                    "name": i,
                    "rule": {"kind": "trait", "trait": "plan", "op": "eq", "value": i},
                },
            ).raise_for_status()
    for path in ("/journeys", "/segments", "/templates"):
        pages = _walk(browser, path, prefix)
        assert len(pages) >= 2, path
        assert sorted(i for page in pages for i in page) == ids, path


def test_a_customers_deliveries_page_by_dispatch_id(stack: Stack, browser: Browser) -> None:
    template_id = f"pages-{uuid.uuid4().hex[:6]}"
    with stack.api("dispatcher") as dispatcher:
        dispatcher.post(
            "/v1/templates",
            json={
                "id": template_id,
                "definition": {
                    "name": "Pages",
                    "variants": [{"channel": "email", "subject": "Hello", "text": "Hi"}],
                },
            },
        ).raise_for_status()
        for _ in range(3):
            sent = dispatcher.post(
                "/v1/test-sends",
                json={"customer_id": stack.customer, "template_id": template_id},
            )
            assert sent.status_code < 300, sent.text
        path = f"/v1/customers/{stack.customer}/deliveries"
        whole = [d["dispatch_id"] for d in dispatcher.get(path, params={"limit": 1000}).json()]
        assert len(whole) >= 3
        walked: list[str] = []
        params: dict[str, str | int] = {"limit": 2}
        while True:
            page = dispatcher.get(path, params=params).json()
            if not page:
                break
            walked += [d["dispatch_id"] for d in page]
            params["after"] = page[-1]["dispatch_id"]
        assert walked == whole  # newest first, none twice, none missed
    # the console shows the page after the one it was given
    later = browser.get(f"/customers/{stack.customer}", params={"deliveries_after": whole[0]})
    section = later.text.split('id="deliveries"')[1].split("</section>")[0]
    assert later.status_code == 200 and "Could not read" not in section
