"""Signing in to the web UI: the login form, the session cookie (what it holds, how it is guarded,
when it ends), safe redirects after login, logout's CSRF check, an open server, and what each
role sees of the audit page."""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

import pytest

from featurestore.config import ApiKey
from featurestore.server.ui.session import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    session_principal,
    session_token,
)
from tests.ui.conftest import KEYS, ui_client

ADA_KEY = "key-ada-admin-000000"
RITA_KEY = "key-rita-read-000000"
PAGE = "/ui/runs"  # a page every role may see


@pytest.fixture
def client(demo_repo):
    with ui_client(demo_repo, KEYS) as c:
        yield c


def login(client, key: str, next_path: str = "/ui/", **headers: str):
    return client.post(
        "/ui/login", data={"key": key, "next": next_path}, headers=headers, follow_redirects=False
    )


def session_cookie(response) -> str:
    """The value of the fs_ui cookie a response sets."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{SESSION_COOKIE}="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError(f"no {SESSION_COOKIE} cookie set: {response.headers.get_list('set-cookie')}")


def with_cookie(client, token: str, path: str = PAGE):
    client.cookies.clear()
    return client.get(path, headers={"Cookie": f"{SESSION_COOKIE}={token}"}, follow_redirects=False)


def goes_to_login(response) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/ui/login?next=")


def test_without_a_session_a_page_sends_the_browser_to_the_login_form(client):
    r = client.get("/ui/runs?model=trip_completion", follow_redirects=False)
    assert goes_to_login(r)
    assert unquote(r.headers["location"].split("next=", 1)[1]) == "/ui/runs?model=trip_completion"
    form = client.get(r.headers["location"])
    assert form.status_code == 200 and 'name="key"' in form.text and 'type="password"' in form.text
    assert 'value="/ui/runs?model=trip_completion"' in form.text  # where it goes after signing in


def test_a_wrong_key_gets_the_form_again_with_401_and_no_cookie(client):
    r = login(client, "not-a-key-of-this-server")
    assert r.status_code == 401 and "text/html" in r.headers["content-type"]
    assert "not one of this server" in r.text
    assert not r.headers.get_list("set-cookie")
    assert goes_to_login(client.get(PAGE, follow_redirects=False))


def test_a_good_key_sets_a_guarded_cookie_that_holds_no_key(client, demo_repo):
    r = login(client, ADA_KEY, "/ui/runs?model=trip_completion")
    assert r.status_code == 303 and r.headers["location"] == "/ui/runs?model=trip_completion"
    header = next(h for h in r.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}="))
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/ui"
    assert attributes["max-age"] == f"Max-Age={SESSION_SECONDS}"
    assert "secure" not in attributes  # plain HTTP here; over HTTPS it is Secure
    token = session_cookie(r)
    assert ADA_KEY not in token and ADA_KEY not in unquote(token)
    page = with_cookie(client, token)
    assert page.status_code == 200 and "ada · admin" in page.text
    assert client.app.state.fs.store.registry.audit_log("ui_login", 5)[0]["actor"] == "ada"


def test_a_tampered_cookie_means_signing_in_again(client):
    token = session_cookie(login(client, RITA_KEY))
    assert with_cookie(client, token).status_code == 200
    name, expires, mac = token.split(".")
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    later = str(int(expires) + 3600)
    ada = session_cookie(login(client, ADA_KEY)).split(".")[0]
    for bad in (
        f"{name}.{expires}.{flipped}",  # one character of the signature changed
        f"{name}.{later}.{mac}",  # a later expiry, same signature
        f"{ada}.{expires}.{mac}",  # another key's name (an admin!) with rita's signature
        f"{name}.{expires}",
        "garbage",
        "x" * 2000,
    ):
        assert goes_to_login(with_cookie(client, bad)), bad


def test_an_expired_session_ends(client):
    auth = client.app.state.fs.auth
    token = session_token(auth, "rita")
    assert session_principal(auth, token) is not None
    assert session_principal(auth, token, now=time.time() + SESSION_SECONDS + 60) is None
    old = session_token(auth, "rita", now=time.time() - SESSION_SECONDS - 60)
    assert goes_to_login(with_cookie(client, old))


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/ui/", "/\\evil.example", "/elsewhere", ""]
)
def test_after_login_the_browser_stays_on_the_ui(client, target):
    r = login(client, ADA_KEY, target)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    form = client.get("/ui/login", params={"next": target})
    assert 'name="next" value="/ui/"' in form.text


def test_login_posted_from_another_site_is_refused(client):
    r = login(client, ADA_KEY, Origin="https://evil.example")
    assert r.status_code == 403 and not r.headers.get_list("set-cookie")


def test_logout_needs_the_csrf_token_then_clears_the_cookie(client):
    token = session_cookie(login(client, ADA_KEY))
    client.cookies.clear()
    cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
    page = client.get(PAGE, headers=cookie).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf, "the page's sign-out form carries a CSRF token"
    for form, extra in (
        ({"next": "/ui/"}, {}),  # no token
        ({"csrf": "0" * 64}, {}),
        ({"csrf": csrf.group(1)}, {"Origin": "https://evil.example"}),
    ):
        refused = client.post("/ui/logout", data=form, headers={**cookie, **extra}, follow_redirects=False)
        assert refused.status_code == 403, (form, extra)
        assert not refused.headers.get_list("set-cookie")
    done = client.post("/ui/logout", data={"csrf": csrf.group(1)}, headers=cookie, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui/login"
    cleared = next(h for h in done.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}="))
    assert cleared.startswith(f'{SESSION_COOKIE}="";') or cleared.startswith(f"{SESSION_COOKIE}=;")
    assert "Max-Age=0" in cleared and "Path=/ui" in cleared


def test_an_open_server_has_no_login(demo_repo):
    with ui_client(demo_repo) as client:
        page = client.get(PAGE, follow_redirects=False)
        form = client.get("/ui/login?next=/ui/runs", follow_redirects=False)
        audit = client.get("/ui/audit", follow_redirects=False)
    assert page.status_code == 200 and "open · no API keys" in page.text
    assert form.status_code == 303 and form.headers["location"] == "/ui/runs"
    assert audit.status_code == 200  # everyone is an admin on an open server, as on the API


def test_a_reader_neither_sees_nor_opens_the_audit_page_an_admin_does(client):
    client.cookies.clear()
    reader = session_cookie(login(client, RITA_KEY))
    admin = session_cookie(login(client, ADA_KEY))
    reader_page = with_cookie(client, reader)
    assert reader_page.status_code == 200 and 'href="/ui/audit"' not in reader_page.text
    refused = with_cookie(client, reader, "/ui/audit")
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert "&#39;admin&#39; role" in refused.text
    admin_page = with_cookie(client, admin)
    assert '<a href="/ui/audit">Audit</a>' in admin_page.text
    assert with_cookie(client, admin, "/ui/audit").status_code == 200


def test_a_changed_key_ends_the_sessions_made_with_the_old_one(demo_repo):
    with ui_client(demo_repo, KEYS) as client:
        token = session_cookie(login(client, ADA_KEY))
        assert with_cookie(client, token).status_code == 200
    rotated = [ApiKey("ada", "admin", "key-ada-admin-rotated-1"), *KEYS[1:]]
    with ui_client(demo_repo, rotated) as client:
        assert goes_to_login(with_cookie(client, token))
        assert login(client, ADA_KEY).status_code == 401  # the old key itself is gone too
        fresh = session_cookie(login(client, "key-ada-admin-rotated-1"))
        assert with_cookie(client, fresh).status_code == 200
