"""The console in a real headless Chromium: Debian's chromium driven by Selenium through /usr/bin/chromedriver
(named explicitly: no tool downloads a browser or a driver), against the app served over real HTTP on a
loopback port. axe-core (tests/browser/axe.min.js, from npm) checks each page's accessibility.

Set IVR_SCREENSHOTS=DIR to save a screenshot of each page visited with `shot` (scripts/screenshots).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("IVR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IVR_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE = Path(__file__).with_name("axe.min.js")


@pytest.fixture(scope="session")
def driver():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
                        "chromium-driver; .ci/run installs them)")
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                "--disable-extensions", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-features=Translate"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


@pytest.fixture
def live(app):
    """The app over real HTTP on a free loopback port; its base URL (http://localhost:PORT)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def app(make_app):
    # Plain http on loopback: Chromium keeps Secure cookies for localhost, but the test server is not
    # https, so the cookie is sent over http here (IVR_CONSOLE_INSECURE_COOKIE is refused in production).
    return make_app(CONSOLE_COOKIE_SECURE=False)


@pytest.fixture
def browser(driver, live):
    """The shared Chromium, signed out, at this test's server."""
    driver.get(live + "/console/static/console.css")
    driver.delete_all_cookies()
    return driver


@pytest.fixture
def shot(browser):
    folder = os.environ.get("IVR_SCREENSHOTS")

    def take(name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            # The whole page (up to 2400 pixels), then the window as it was.
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": 1280, "height": min(max(int(height), 600), 2400), "deviceScaleFactor": 1, "mobile": False})
            browser.save_screenshot(str(Path(folder) / f"{name}.png"))
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return take


def axe_serious(browser) -> list[dict]:
    """axe-core's serious and critical violations on the page now."""
    if not browser.execute_script("return typeof axe !== 'undefined'"):
        browser.execute_script(AXE.read_text(encoding="utf-8"))
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n.get("target") for n in v.get("nodes", [])][:3]}
            for v in result if v.get("impact") in ("serious", "critical")]
