"""The app in a real browser: `streamlit run` as a subprocess, driven by headless Chromium.

The main flow on a tiny main-job directory: open Recommend and wait for the results table, go
to New user, pick and rate titles, see before and after; then How it learned and Evaluation.
No page may show a Streamlit exception or the app's own "could not be shown" message. A
screenshot of each page goes to ``$RECSYS_SCREENSHOT_DIR`` (default: the test's tmp dir); a plain
headless screenshot of a Streamlit page is blank, so every one waits for the page's elements and
for the script run to finish first.

Needs Debian's chromium and chromium-driver and the selenium package; skipped without them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.app.conftest import APP

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BAD_TEXT = ("could not be shown", "Could not show")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not Path(CHROMIUM).exists():
        return "Debian chromium is not installed (apt-get install -y chromium chromium-driver)"
    if not Path(CHROMEDRIVER).exists():
        return f"{CHROMEDRIVER} is missing (apt-get install -y chromium-driver)"
    return None


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--", "--run", str(tiny_run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RECSYS_RUN", None)  # the --run argument is what is being tested
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=APP.parent.parent, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def driver(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--window-size=1500,2300"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(120)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def shots(tmp_path) -> Path:
    out = Path(os.environ.get("RECSYS_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def settle(d, until, *, what: str, timeout: float = 120) -> None:
    """Wait until `until(d)` holds and Streamlit is not running the script, twice in a row."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d) -> bool:
        return bool(until(d)) and not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')

    WebDriverWait(d, timeout, poll_frequency=0.5).until(ready, message=f"waiting for {what}")
    time.sleep(1.5)  # a rerun can start right after a widget settles
    WebDriverWait(d, timeout, poll_frequency=0.5).until(ready, message=f"waiting for {what}")


def check_page(d, name: str, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    path = shots / f"{name}.png"
    d.save_screenshot(str(path))
    assert path.stat().st_size > 20_000, f"{path} looks blank"
    assert not d.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), f"{name}: Streamlit exception"
    alerts = [a.text for a in d.find_elements(By.CSS_SELECTOR, '[data-testid="stAlert"]')]
    assert not [a for a in alerts if any(b in a for b in BAD_TEXT)], alerts


def heading(text: str):
    from selenium.webdriver.common.by import By

    return lambda d: any(h.text.strip() == text for h in d.find_elements(By.CSS_SELECTOR, "h1"))


def test_main_flow_in_a_real_browser(server, driver, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    d = driver
    d.get(server)
    settle(d, lambda d: heading("Recommend")(d) and len(d.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')) >= 2,
           what="the Recommend results table")
    body = d.find_element(By.TAG_NAME, "body").text
    assert "Top 10 for user" in body and "Retrieved candidates" in body
    check_page(d, "recommend", shots)

    link = next(a for a in d.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a') if "New user" in a.text)
    link.click()
    settle(d, lambda d: heading("New user")(d) and "Zero ratings so far" in d.find_element(By.TAG_NAME, "body").text,
           what="the New user page")
    for title in ("Movie 3 (", "Movie 7 ("):
        box = d.find_element(By.CSS_SELECTOR, '[data-testid="stMultiSelect"] input')
        box.click()
        box.send_keys(title)
        WebDriverWait(d, 30).until(lambda d, t=title: [o for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]')
                                                       if o.text.startswith(t)], message=f"the option {title}")
        next(o for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]') if o.text.startswith(title)).click()
        settle(d, lambda d, t=title: t in d.find_element(By.CSS_SELECTOR, '[data-testid="stMultiSelect"]').text,
               what=f"the pick {title}")
    box.send_keys(Keys.ESCAPE)
    thumbs = d.find_elements(By.CSS_SELECTOR, 'input[type="range"]')  # visually hidden inputs of the sliders
    assert len(thumbs) >= 3  # k, and one star rating per pick
    d.execute_script("arguments[0].focus()", thumbs[-1])
    thumbs[-1].send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # the second pick: 4 stars → 2
    settle(d, lambda d: "After:" in d.find_element(By.TAG_NAME, "body").text
           and "adaptation time" in d.find_element(By.TAG_NAME, "body").text, what="before and after")
    body = d.find_element(By.TAG_NAME, "body").text
    assert "Before:" in body and "2 rating(s)" in body and "Zero ratings so far" not in body
    assert "★★☆☆☆" in body  # the rating moved
    check_page(d, "new_user", shots)

    for path, title, what in (("how_it_learned", "How it learned", "Weighting strategies"),
                              ("evaluation", "Evaluation", "Candidate retrieval")):
        d.get(f"{server}/{path}")
        settle(d, lambda d: heading(title)(d) and what in d.find_element(By.TAG_NAME, "body").text
               and d.find_elements(By.CSS_SELECTOR, "canvas, svg.marks"), what=f"the {title} page")
        time.sleep(2)  # Vega draws after the element appears
        check_page(d, path, shots)
