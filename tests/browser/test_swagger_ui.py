"""Swagger UI at ``/docs`` in a real browser: it renders, authorises and executes a call.

The page runs offline (its scripts come from the swagger-ui-bundle package
on the orchestrator itself) and every request it makes goes to loopback.
A screenshot of the executed call is kept under ``artifacts/browser/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from harness.api import ApiClient

from browser.cdp import Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
OPERATION_PATHS = "[...document.querySelectorAll('.opblock .opblock-summary-path')].map(e => e.dataset.path)"


def admin_token(base_url: str, password: str) -> str:
    return str(ApiClient(base_url).login("admin", password, expect=200).json()["access_token"])


def operation(page: Page, method: str, path: str) -> str:
    """CSS selector (by element id) of the operation block for ``method path``."""
    found = page.evaluate(
        f"(() => {{ const s = [...document.querySelectorAll('.opblock.opblock-{method}')]"
        f".find(b => b.querySelector('.opblock-summary-path').dataset.path === {json.dumps(path)});"
        " return s ? '#' + CSS.escape(s.id) : null; })()"
    )
    assert found, f"no {method.upper()} {path} operation block"
    return str(found)


def test_swagger_ui_renders_authorises_and_executes_a_call(live_orchestrator, orchestrator, page: Page) -> None:  # type: ignore[no-untyped-def]
    token = admin_token(live_orchestrator, orchestrator.secrets.admin_password)

    page.navigate(f"{live_orchestrator}/docs")
    page.wait_selector(".opblock")
    paths = set(page.evaluate(OPERATION_PATHS))
    assert {"/v1/auth/login", "/v1/tasks", "/v1/users/me", "/v1/tasks/{ref}/result"} <= paths, sorted(paths)
    assert "cynode orchestrator" in page.text(".information-container .title")

    # Authorize: the bearerAuth scheme takes the access token.
    page.click(".auth-wrapper button.authorize")
    page.wait_selector(".modal-ux .auth-container input")
    page.type_into(".modal-ux .auth-container input", token)
    page.click(".modal-ux .auth-btn-wrapper button.authorize")
    page.wait_for(
        "[...document.querySelectorAll('.modal-ux .auth-btn-wrapper button')].some(b => b.innerText === 'Logout')",
        what="the Logout button of an authorised scheme",
    )
    page.click(".modal-ux button.btn-done")
    page.wait_for("!document.querySelector('.modal-ux')", what="the Authorize dialog to close")

    # GET /v1/users/me through the UI: expand, Try it out, Execute.
    me = operation(page, "get", "/v1/users/me")
    page.click(f"{me} .opblock-summary")
    page.click(f"{me} button.try-out__btn")
    page.click(f"{me} button.execute")
    page.wait_selector(f"{me} .live-responses-table tr.response .response-col_status")
    status = page.text(f"{me} .live-responses-table tr.response .response-col_status").strip()
    body = page.text(f"{me} .live-responses-table tr.response .response-col_description pre")
    curl = page.text(f"{me} .curl-command")
    page.screenshot(ARTIFACTS / "swagger-ui-users-me.png")

    assert status == "200", (status, body)
    assert json.loads(body)["handle"] == "admin", body
    assert f"Authorization: Bearer {token}" in curl, curl
    assert page.exceptions() == []
    urls = page.requested_urls()
    assert any(u.endswith("/openapi.json") for u in urls) and any(u.endswith("/v1/users/me") for u in urls), urls
    assert {urlsplit(u).hostname for u in urls if not u.startswith("data:")} == {"127.0.0.1"}, urls
