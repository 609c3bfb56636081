"""A real browser (Debian's headless Chromium, driven by Selenium through Debian's
chromium-driver) signs in, opens a customer's page and gets a segment's live match count
from the editor's script, under the console's Content-Security-Policy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.console.conftest import ADMIN_TOKEN, Stack

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "docs" / "images"


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
    assert '"count": 3' in driver.find_element(By.ID, "seg-rule").get_attribute("value")
    _screenshot(driver, "console-segment.png")

    # the policy held: nothing was refused (an inline script or style would be)
    refused = [
        entry["message"]
        for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
        if "Content Security Policy" in entry["message"]
    ]
    assert refused == []


def _screenshot(driver: object, name: str) -> None:
    """Kept for docs/console.md when asked (``TENURE_CONSOLE_SCREENSHOTS=1``)."""
    if os.environ.get("TENURE_CONSOLE_SCREENSHOTS"):
        driver.save_screenshot(str(SCREENSHOTS / name))  # type: ignore[attr-defined]
