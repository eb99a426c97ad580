"""The Airflow UI in a real browser, as a person uses it: Debian's chromium driven by playwright.

No browser can be downloaded here, so playwright launches the system's ``/usr/bin/chromium`` (``apt-get install -y
chromium``; ``.ci/run`` installs it). Used by the UI tests (``tests/e2e``) and the deploy test's login check.
The helpers here only drive the browser and report what they saw; the callers assert.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1400, "height": 1000}
LOGIN_PAGE = "**/auth/login**"  # FAB's login page


class BrowserMissing(RuntimeError):
    """Debian's chromium is not installed."""


@contextmanager
def chromium(host_map: Mapping[str, str] | None = None) -> Iterator[Any]:
    """A headless chromium (playwright's ``Browser``), closed on exit.

    ``host_map``: host name -> address the browser resolves it to (what DNS would do for a deployment's names).
    """
    if not CHROMIUM.exists():
        raise BrowserMissing(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)"
        )
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if host_map:
        args.append("--host-resolver-rules=" + ", ".join(f"MAP {host} {address}" for host, address in host_map.items()))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield browser
        finally:
            browser.close()


def log_in_with_password(page: Any, start_url: str, username: str, password: str) -> None:
    """Open ``start_url``, be sent to FAB's login form, sign in, and come back to ``start_url``."""
    page.goto(start_url)
    page.wait_for_url(LOGIN_PAGE)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    landing = urlsplit(start_url).path.rstrip("/")
    page.wait_for_url(lambda url: "/auth/" not in url and urlsplit(url).path.rstrip("/") == landing)


@dataclass(frozen=True)
class IdpLogin:
    """What the browser saw while logging in through the identity provider."""

    password_fields_at_airflow: int  # on FAB's login page (0 under AUTH_OAUTH: one button per provider)
    button_text: str  # the provider's button on FAB's login page
    visited: tuple[str, ...]  # every page the browser navigated to, in order
    final_url: str  # where FAB sent the browser after the login
    tokens: tuple[str, ...]  # the Airflow tokens (``_token`` cookies) the browser then held


def log_in_through_idp(
    browser: Any,
    airflow_url: str,
    start_path: str,
    provider: str,
    issuer: str,
    username: str,
    password: str,
    *,
    wait_for_text: str | None = None,
    screenshots: Path | None = None,
    ignore_https_errors: bool = False,
) -> IdpLogin:
    """Open ``airflow_url + start_path`` in a new browser session, press FAB's "Sign In with <provider>", fill the
    provider's form at ``issuer``, and follow the redirects back to Airflow. ``wait_for_text``: wait until the page
    Airflow returns to shows it (its data read with the new session)."""
    context = browser.new_context(viewport=VIEWPORT, ignore_https_errors=ignore_https_errors)
    try:
        page = context.new_page()
        visited: list[str] = []
        page.on("request", lambda request: visited.append(request.url) if request.is_navigation_request() else None)
        page.goto(f"{airflow_url}{start_path}")
        page.wait_for_url(LOGIN_PAGE)
        password_fields = page.get_by_label("Password").count()
        button = page.locator(f"#btn-signin-{provider}")
        button_text = button.inner_text().strip()
        button.click()

        page.wait_for_url(f"{issuer}/login?**")  # the provider's own form
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        if screenshots:
            page.screenshot(path=str(screenshots / f"{username}-idp.png"))
        page.get_by_role("button", name="Sign in").click()

        page.wait_for_url(lambda url: url.startswith(airflow_url) and "/auth/" not in url, timeout=60_000)
        if wait_for_text:
            page.get_by_text(wait_for_text).first.wait_for(timeout=30_000)
        if screenshots:
            page.screenshot(path=str(screenshots / f"{username}-ui.png"))
        tokens = tuple(cookie["value"] for cookie in context.cookies(airflow_url) if cookie["name"] == "_token")
        return IdpLogin(password_fields, button_text, tuple(visited), page.url, tokens)
    finally:
        context.close()
