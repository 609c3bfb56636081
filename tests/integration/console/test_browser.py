"""A real browser (Debian's headless Chromium, driven by Selenium through Debian's
chromium-driver) signs in, opens a customer's page, gets a segment's live match count
from the editor's script, previews a template for the customer, publishes a journey and
watches its step count rise on the open page as the trigger comes in through ingest,
under the console's Content-Security-Policy; axe-core (vendored in tests/support/vendor)
finds no serious or critical accessibility violation on any of these pages."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.console.conftest import ADMIN_TOKEN, Stack

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "docs" / "images"
AXE = ROOT / "tests" / "support" / "vendor" / "axe-4.14.1.min.js"


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    found = _binaries()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are needed (.ci/run installs them)")
        pytest.skip("chromium or chromedriver is not installed (apt-get install chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(found[1]), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def test_sign_in_a_customer_page_and_a_segment_preview_in_a_browser(
    stack: Stack, driver: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(driver, WebDriver)
    wait = WebDriverWait(driver, 30)
    driver.get(f"{stack.console}/customers/{stack.customer}")
    # not signed in: the sign-in page, which comes back here
    wait.until(seen.presence_of_element_located((By.ID, "token")))
    driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait.until(seen.presence_of_element_located((By.ID, "traits")))
    assert driver.current_url.endswith(f"/customers/{stack.customer}")
    _accessible(driver)
    traits = driver.find_element(By.ID, "traits").text
    assert stack.email in traits and "Ada <b>Lovelace</b>" in traits  # text, not markup
    assert "Order Completed" in driver.find_element(By.ID, "events").text
    _screenshot(driver, "console-customer.png")

    # the JSON rule edited in the page: the script asks for the live count
    driver.get(f"{stack.console}/segments/new")
    rule = wait.until(seen.presence_of_element_located((By.ID, "seg-rule")))
    rule.clear()
    rule.send_keys('{"kind": "event_count", "event": "Order Completed", "op": "gte", "count": 2}')
    count = driver.find_element(By.CSS_SELECTOR, "[data-preview-count]")
    wait.until(lambda _: "match now" in count.text)
    assert count.text == "1 customers match now"
    sample = driver.find_element(By.CSS_SELECTOR, "[data-preview-sample]")
    assert stack.customer in sample.text
    # the structured leaf, through the script too (no page load)
    driver.find_element(By.ID, "leaf-count").clear()
    driver.find_element(By.ID, "leaf-count").send_keys("3")
    driver.find_element(By.CSS_SELECTOR, "button[value=leaf]").click()
    wait.until(lambda _: count.text == "0 customers match now")
    assert '"count": 3' in (driver.find_element(By.ID, "seg-rule").get_attribute("value") or "")
    _screenshot(driver, "console-segment.png")
    _accessible(driver)

    # a template previewed for the customer, by the dispatcher
    template_id = _a_template(stack)
    driver.get(f"{stack.console}/templates/{template_id}")
    wait.until(seen.presence_of_element_located((By.ID, "pv-customer"))).send_keys(stack.customer)
    driver.find_element(By.CSS_SELECTOR, "button[value=preview]").click()
    subject = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "[data-subject]")))
    assert subject.text == "Thanks, Ada <b>Lovelace</b>"
    _screenshot(driver, "console-template.png")
    _accessible(driver)

    # a journey published with its button
    journey_id = _a_journey(stack)
    driver.get(f"{stack.console}/journeys/{journey_id}")
    driver.find_element(
        By.CSS_SELECTOR, f"form[action='/journeys/{journey_id}/publish'] button"
    ).click()
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "h1 .badge.active")))
    assert "flowchart TD" in driver.find_element(By.ID, "diagram").text
    # triggered through ingest: the step's count rises on the open page, with no reload
    entered = driver.find_element(By.CSS_SELECTOR, "tr[data-step=wait] [data-count=entered]")
    assert entered.text == "0"
    stack.track(stack.customer, "Product Viewed", product_id="shoe-1")
    WebDriverWait(driver, 40).until(lambda _: entered.text == "1")
    _screenshot(driver, "console-journey.png")
    _accessible(driver)
    for page in ("/report", "/settings", "/segments", "/templates", "/journeys"):
        driver.get(f"{stack.console}{page}")
        _accessible(driver)

    # the policy held: nothing was refused (an inline script or style would be)
    refused = [
        entry["message"]
        for entry in driver.get_log("browser")  # type: ignore[attr-defined]
        if "Content Security Policy" in entry["message"]
    ]
    assert refused == []


def _accessible(driver: Any) -> None:
    """axe-core's serious and critical violations of the page: none."""
    serious = _serious_violations(driver)
    assert serious == [], (driver.current_url, serious)


def _serious_violations(driver: Any) -> list[list[Any]]:
    """[rule, impact, nodes] of axe-core's serious and critical findings. (WebDriver's
    script runs outside the page's CSP, as a browser extension's would.)"""
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.length])))"
        ".catch(e => done([['axe failed', String(e), 0]]));"
    )
    return [v for v in result if v[1] in ("serious", "critical") or v[0] == "axe failed"]


def test_the_accessibility_check_finds_what_it_should(driver: object) -> None:
    """axe-core really runs: an unlabelled field and an image without text are found."""
    driver.get("data:text/html,<html lang=en><title>x</title><input><img src=x.png></html>")  # type: ignore[attr-defined]
    found = {rule for rule, _, _ in _serious_violations(driver)}
    assert {"label", "image-alt"} <= found, found


def _a_template(stack: Stack) -> str:
    template_id = f"thanks-{uuid.uuid4().hex[:6]}"
    with stack.api("dispatcher") as dispatcher:
        dispatcher.post(
            "/v1/templates",
            json={
                "id": template_id,
                "definition": {
                    "name": "Thanks",
                    "variants": [
                        {
                            "channel": "email",
                            "subject": "Thanks, {{ customer.traits.name }}",
                            "html": "<p>Your plan: {{ customer.traits.plan }}</p>",
                        }
                    ],
                },
            },
        ).raise_for_status()

        def previewed() -> bool:  # the dispatcher's projection knows the customer
            answer = dispatcher.post(
                f"/v1/templates/{template_id}/preview", json={"customer_id": stack.customer}
            )
            return answer.status_code == 200

        stack.until(previewed)
    return template_id


def _a_journey(stack: Stack) -> str:
    journey_id = f"browse-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=stack.urls["journey"], headers=_admin(), timeout=30) as journey:
        journey.post(
            "/v1/journeys",
            json={
                "id": journey_id,
                "name": "Browse abandonment",
                "definition": {
                    "triggers": [{"kind": "event", "event": "Product Viewed"}],
                    "steps": [
                        {"id": "wait", "type": "wait", "duration": "P1D", "next": "done"},
                        {"id": "done", "type": "exit"},
                    ],
                },
            },
        ).raise_for_status()
    return journey_id


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _screenshot(driver: object, name: str) -> None:
    """Kept for docs/console.md when asked (``TENURE_CONSOLE_SCREENSHOTS=1``)."""
    if os.environ.get("TENURE_CONSOLE_SCREENSHOTS"):
        driver.save_screenshot(str(SCREENSHOTS / name))  # type: ignore[attr-defined]
