"""Browser fixtures: headless Debian Chromium driven over the DevTools Protocol.

Chromium is a requirement of the suite (``scripts/bootstrap`` installs it):
when it is missing these tests fail, they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from browser.cdp import CdpError, Chromium, Page


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    try:
        browser = Chromium().start()
    except CdpError as exc:
        pytest.fail(str(exc))
    yield browser
    browser.stop()


@pytest.fixture
def page(chromium: Chromium) -> Iterator[Page]:
    """The browser's tab, with network and console events recorded."""
    tab = chromium.page()
    tab.call("Network.enable")
    tab.call("Runtime.enable")
    tab.call("Page.enable")
    yield tab
    tab.call("Page.navigate", url="about:blank")
    tab.close()
