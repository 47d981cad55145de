"""The dashboard in a real headless Chromium (Debian's, driven by Selenium): it loads,
shows routes and budgets, a request made during the test appears live, and the plan
box explains a plan. Saves the screenshots docs/dashboard.md shows."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http.conftest import RunningGateway, start_gateway
from tests.http.test_dashboard import POLICY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium and chromedriver are not installed (scripts/test.sh installs them as root)",
)

SHOTS = Path(os.environ.get("TURNOUT_SCREENSHOTS", tempfile.gettempdir()))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    path = tmp_path / "routes.yaml"
    path.write_text(POLICY)
    running = start_gateway(path)
    yield running
    running.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _chat(gateway: RunningGateway, rid: str) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "smart", "messages": [{"role": "user", "content": "hello"}]},
        headers={"x-request-id": rid},
    )
    assert response.status_code == 200


def test_the_dashboard_lives_in_a_browser(gateway: RunningGateway, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 10)
    _chat(gateway, "before-the-page")
    browser.get(gateway.url + "/ui")
    routes = browser.find_element(By.ID, "routes").text
    assert "smart" in routes and "broken/a" in routes and "mock/echo" in routes
    assert "budget 'daily'" in browser.find_element(By.ID, "budgets").text
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    assert "before-the-page" in browser.find_element(By.ID, "requests").text

    _chat(gateway, "made-while-watching")
    wait.until(ec.text_to_be_present_in_element((By.ID, "requests"), "made-while-watching"))
    newest = browser.find_element(By.CSS_SELECTOR, "#requests tbody tr")
    assert "made-while-watching" in newest.text and "mock/echo" in newest.text
    assert "server_error" in newest.text  # the attempt trail: the failed target, then the fallback
    browser.save_screenshot(str(SHOTS / "dashboard.png"))

    browser.find_element(By.NAME, "model").send_keys("smart")
    browser.find_element(By.NAME, "max_tokens").send_keys("50")
    browser.find_element(By.CSS_SELECTOR, "#plan-form button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "plan-out"), "route 'smart'"))
    explained = browser.find_element(By.ID, "plan-out").text
    assert "1. broken/a" in explained and "2. mock/echo" in explained
    browser.save_screenshot(str(SHOTS / "dashboard-plan.png"))
