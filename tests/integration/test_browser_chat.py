"""A real browser (headless Debian Chromium) chatting over WebSockets through each front end."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .browser import chromium
from .harness import Frontend
from .test_core import wait_serving

CHAT = str(Path(__file__).resolve().parents[2] / "examples" / "chat" / "app.py") + ":app"


def log_lines(driver: object) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log li")]  # type: ignore[attr-defined]


def test_two_browser_tabs_chat_over_websockets(frontend: Frontend) -> None:
    frontend.start_handler(CHAT)
    wait_serving(frontend, "/")
    with chromium() as driver:
        wait = WebDriverWait(driver, 20)
        driver.get(frontend.url("/"))
        first = driver.current_window_handle
        wait.until(lambda d: d.find_element(By.ID, "status").text == "connected")
        driver.switch_to.new_window("tab")
        driver.get(frontend.url("/"))
        second = driver.current_window_handle
        wait.until(lambda d: d.find_element(By.ID, "status").text == "connected")
        welcome = log_lines(driver)[0]
        assert welcome.startswith("welcome, you are #")

        # The second tab speaks; both tabs hear it.
        box = driver.find_element(By.ID, "text")
        box.send_keys("hello from tab two")
        driver.find_element(By.CSS_SELECTOR, "#send button").click()
        said = f"{welcome.removeprefix('welcome, you are ')}: hello from tab two"
        wait.until(lambda d: said in log_lines(d))
        driver.switch_to.window(first)
        wait.until(lambda d: said in log_lines(d))

        # Closing the second tab leaves the first one chatting alone.
        driver.switch_to.window(second)
        driver.close()
        driver.switch_to.window(first)
        driver.find_element(By.ID, "text").send_keys("anyone there?")
        driver.find_element(By.CSS_SELECTOR, "#send button").click()
        wait.until(lambda d: any(line.endswith(": anyone there?") for line in log_lines(d)))
        assert driver.find_element(By.ID, "status").text == "connected"
