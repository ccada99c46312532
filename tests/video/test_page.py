"""The reference video page (``/video/{booking_id}/``) as served: headers, assets, and what its
script may and may not do. No browser, no network namespace: the browser tests are
``tests/video/test_browser.py``."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "video" / "static" / "video" / "room.js").read_text()
PROTOCOL_DOC = (ROOT / "docs" / "video.md").read_text()
BOOKING = uuid.UUID("5b1e3c52-8f0e-4c59-9d55-0c1c1f1a2b3c")
PAGE = f"/video/{BOOKING}/"


class _Page(HTMLParser):
    """What a CSP without 'unsafe-inline' would block: inline scripts, styles, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name, _ in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
        if tag == "script":
            if not named.get("src"):
                self.inline.append("<script> without src")
            else:
                self.scripts.append(named["src"] or "")
            self._in = "script"
        elif tag == "style":
            self.inline.append("<style>")
        elif tag == "link" and named.get("rel") == "stylesheet":
            self.styles.append(named.get("href") or "")
        for name in ("href", "src"):
            value = named.get(name) or ""
            if value.lower().startswith("javascript:") or "//" in value:
                self.inline.append(f"<{tag} {name}={value}> (inline or external)")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script" and data.strip():
            self.inline.append("script body")


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture
def web() -> Client:
    return Client()


def test_the_page_is_html_not_stored_and_needs_no_sign_in(web: Client) -> None:
    response = web.get(PAGE)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response["Cache-Control"] == "no-store"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "no-referrer"
    html = response.content.decode()
    assert f'data-booking-id="{BOOKING}"' in html
    assert 'id="token"' in html and 'id="join"' in html


def test_the_page_runs_under_a_strict_csp_with_no_inline_script(web: Client) -> None:
    response = web.get(PAGE)
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in response["Content-Security-Policy"].split(";")
        if directive.strip()
    }
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert all(host.endswith("//testserver") for host in csp["connect-src"][1:])
    assert "camera=(self)" in response["Permissions-Policy"]
    page = _parse(response.content.decode())
    assert page.inline == []
    assert page.scripts == ["/video/assets/room.js", "/video/assets/precall.js"]
    assert page.styles == ["/video/assets/room.css"]


@pytest.mark.parametrize(
    ("asset", "media_type"),
    [("room.js", "text/javascript"), ("precall.js", "text/javascript"), ("room.css", "text/css")],
)
def test_the_page_assets_are_served_with_their_media_type(
    web: Client, asset: str, media_type: str
) -> None:
    response = web.get(f"/video/assets/{asset}")
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == media_type
    assert response["X-Content-Type-Options"] == "nosniff"
    served = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert served == (ROOT / "video" / "static" / "video" / asset).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/video/assets/pages.py",
        "/video/assets/..%2Fpages.py",
        "/video/assets/room.html",
        "/video/not-a-uuid/",
        f"/video/{BOOKING}/extra",
    ],
)
def test_nothing_else_is_served(web: Client, path: str) -> None:
    assert web.get(path).status_code == 404


def test_the_page_only_answers_get(web: Client) -> None:
    assert web.post(PAGE).status_code == 405


def test_the_script_never_reads_a_token_from_the_query_string() -> None:
    """VID-03 / GEN-03: the access token comes from the input, sessionStorage or the fragment
    (never sent to the server); the room token goes in ``hello``, never in the socket URL."""
    assert "location.search" not in SCRIPT
    assert "searchParams" not in SCRIPT
    assert "location.href.split" not in SCRIPT
    assert "new URLSearchParams(location.hash.slice(1))" in SCRIPT
    # The room token travels in the hello message only.
    assert re.search(r'type: "hello", token: call\.join\.token', SCRIPT)
    assert "new WebSocket(socketUrl(call.join.ws_url))" in SCRIPT
    # The access token goes in the Authorization header, and no cookie is sent with the join.
    assert "Authorization: `Bearer ${call.accessToken}`" in SCRIPT
    assert 'credentials: "omit"' in SCRIPT
    # Text from the other side (notes, names) is set as text, never parsed as HTML.
    assert "innerHTML" not in SCRIPT
    assert "insertAdjacentHTML" not in SCRIPT


def _doc_section(title: str) -> str:
    start = PROTOCOL_DOC.index(title)
    end = PROTOCOL_DOC.find("\n#", start + len(title))
    return PROTOCOL_DOC[start : end if end != -1 else None]


def test_every_refusal_of_the_join_has_its_message() -> None:
    refusals = _doc_section("Refusals (problem+json")
    codes = set(re.findall(r"`([a-z_]+)`", refusals)) - {"opens_at"}
    assert {"booking_not_found", "room_not_open", "no_video"} <= codes
    for code in codes:
        assert f'case "{code}":' in SCRIPT, code
    assert "problem.opens_at" in SCRIPT  # room_not_open says when, in local time
    assert "toLocaleString" in SCRIPT
    for status in (401, 403, 429):
        assert f"status === {status}" in SCRIPT


def test_every_close_code_has_its_message() -> None:
    table = _doc_section("### Close codes")
    codes = re.findall(r"^\| (4\d\d\d) \|", table, flags=re.MULTILINE)
    assert {"4401", "4403", "4409", "4410", "4413", "4429"} <= set(codes)
    for code in codes:
        assert re.search(rf"^\s+{code}: \"", SCRIPT, flags=re.MULTILINE), code


def test_every_server_message_has_a_handler() -> None:
    """The script is the protocol by example: it handles each server → client message."""
    table = _doc_section("### Server → client")
    types: set[str] = set()
    for row in table.splitlines()[3:]:
        if row.startswith("|"):
            types |= set(re.findall(r"`([a-z-]+)`", row.split("|")[1]))
    assert {"joined", "peer-joined", "candidate", "ended", "error"} <= types
    for kind in types:
        assert re.search(rf"^    (async )?\"?{kind}\"?\(m?\) \{{", SCRIPT, re.MULTILINE), kind


def test_every_client_message_is_sent_somewhere() -> None:
    table = _doc_section("### Client → server")
    types: set[str] = set()
    for row in table.splitlines()[3:]:
        if row.startswith("|"):
            types |= set(re.findall(r"`([a-z-]+)`", row.split("|")[1]))
    assert {"hello", "admit", "offer", "candidate", "leave"} <= types
    for kind in types:
        assert f'type: "{kind}"' in SCRIPT, kind


def test_camera_permission_denial_gets_advice() -> None:
    assert 'name === "NotAllowedError"' in SCRIPT
    assert "NotFoundError" in SCRIPT and "NotReadableError" in SCRIPT
