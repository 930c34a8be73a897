"""Who is looking at a UI page: the session cookie the login form sets, and CSRF tokens for its forms.

With API keys configured, `/ui/login` takes a key and sets the cookie `fs_ui`: the key's name, an
expiry and an HMAC of both made with the key itself. The key is never in the cookie, every worker
of a server can check it (no server-side session store), and changing or removing the key ends its
sessions. The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
it), Path=/ui, and Secure when the request came over HTTPS (or a proxy says so: X-Forwarded-Proto). A request may also carry its key as
the API does (`Authorization: Bearer`, `X-API-Key`), for scripts and tests.

Without keys the UI is open, as the API is: everyone is `anonymous` with the admin role.

Every form that changes something (approve, reject, logout) carries a CSRF token, checked on POST
together with the `Origin` header: with a session it is an HMAC of the session cookie (so it is
worth nothing without the cookie, and ends with it); on an open UI it is the value of a random
cookie `fs_ui_csrf` (double submit).

    viewer = await current_viewer(request, "read")    # or the page's role; else login / 403
    check_form(request, viewer, form)                 # before acting on a POST
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import HTTPException, Request
from starlette.responses import Response

from featurestore.governance import PERMISSIONS

from ..auth import ANONYMOUS, Authenticator, Principal, key_in

SESSION_COOKIE = "fs_ui"
CSRF_COOKIE = "fs_ui_csrf"
SESSION_SECONDS = 12 * 3600
COOKIE_PATH = "/ui"
MAX_FORM_BYTES = 16 * 1024


class LoginRequired(Exception):
    """No valid session or key: the UI answers with a redirect to its login page."""

    def __init__(self, next_path: str):
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    """The caller of a UI page: who, with which role, and the CSRF token its forms carry."""

    principal: Principal
    csrf: str
    open: bool  # no API keys configured: everyone is anonymous (admin)
    by_session: bool = False  # signed in with the login form (else a key header, or an open UI)
    new_csrf_cookie: bool = False  # an open UI's first visit: the page sets the CSRF cookie

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def role(self) -> str:
        return self.principal.role

    def may(self, role: str) -> bool:
        """Whether this viewer's role holds every permission of `role`."""
        return self.principal.may(role)


def _mac(key: bytes, purpose: str, message: str) -> str:
    return hmac.new(key, f"fs-ui:{purpose}:{message}".encode(), hashlib.sha256).hexdigest()


def session_token(auth: Authenticator, name: str, now: float | None = None) -> str:
    """The cookie value of a session of key `name`, valid SESSION_SECONDS from `now`."""
    found = auth.key_named(name)
    if found is None:
        raise ValueError(f"no API key named {name!r}")
    expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
    body = f"{base64.urlsafe_b64encode(name.encode()).decode().rstrip('=')}.{expires}"
    return f"{body}.{_mac(found[0], 'session', body)}"


def session_principal(auth: Authenticator, token: str | None, now: float | None = None) -> Principal | None:
    """The Principal of a session cookie if it is well-formed, signed by its key and not expired."""
    if not token or len(token) > 1024:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    name_b64, expires, mac = parts
    try:
        name = base64.urlsafe_b64decode(name_b64 + "=" * (-len(name_b64) % 4)).decode()
        deadline = int(expires)
    except ValueError:  # (binascii.Error and UnicodeDecodeError are ValueErrors)
        return None
    found = auth.key_named(name)
    if found is None:
        return None
    key, principal = found
    if not hmac.compare_digest(mac, _mac(key, "session", f"{name_b64}.{expires}")):
        return None
    if deadline < (now if now is not None else time.time()):
        return None
    return principal


def _csrf_for_session(auth: Authenticator, principal: Principal, token: str) -> str:
    found = auth.key_named(principal.name)
    return _mac(found[0], "csrf", token) if found else ""


async def current_viewer(request: Request, role: str = "read") -> Viewer:
    """The viewer of `request`, if its role holds `role`: else LoginRequired (no session) or 403."""
    if role not in PERMISSIONS:
        raise ValueError(f"unknown role {role!r}")
    auth: Authenticator = request.app.state.fs.auth
    request.scope.setdefault("state", {})["ui_started"] = time.perf_counter()
    if auth.open:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = not (16 <= len(cookie) <= 128 and cookie.isalnum())
        viewer = Viewer(
            ANONYMOUS, secrets.token_hex(16) if fresh else cookie, open=True, new_csrf_cookie=fresh
        )
    else:
        token = request.cookies.get(SESSION_COOKIE)
        principal = session_principal(auth, token)
        if principal is not None and token is not None:
            viewer = Viewer(principal, _csrf_for_session(auth, principal, token), open=False, by_session=True)
        else:
            by_key = auth.identify(key_in(request.scope["headers"]))
            if by_key is None:
                raise LoginRequired(_here(request))
            # A key sent as a header is not sent by a browser on its own: no CSRF to guard against,
            # but forms still need a token, made from the key.
            viewer = Viewer(by_key, _csrf_for_session(auth, by_key, "header"), open=False)
    if not viewer.may(role):
        raise HTTPException(
            403, f"API key '{viewer.name}' has role '{viewer.role}'; this page needs the '{role}' role"
        )
    request.scope["state"]["principal"] = viewer.principal  # what the audit trail records
    return viewer


def _here(request: Request) -> str:
    """Where login should return to: this page for a GET; for a POST (an approve with an expired
    session), the page the form was on (the Referer, if a UI path of this server), else /ui/."""
    if request.method not in ("GET", "HEAD"):
        referer = urlsplit(request.headers.get("referer", ""))
        own = {request.headers.get("host", ""), _first(request, "x-forwarded-host")}
        if referer.netloc in own and referer.path.startswith(f"{COOKIE_PATH}/"):
            return f"{referer.path}?{referer.query}" if referer.query else referer.path
        return f"{COOKIE_PATH}/"
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def safe_next(value: str | None) -> str:
    """Where to go after login: a path of the UI only (never another host: no open redirect)."""
    if not value or not value.startswith(COOKIE_PATH) or value.startswith("//") or "\\" in value:
        return f"{COOKIE_PATH}/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return f"{COOKIE_PATH}/"
    return value


def login_url(next_path: str) -> str:
    """The login page's URL, returning to `next_path` (if a UI path) after."""
    return f"{COOKIE_PATH}/login?next={quote(safe_next(next_path), safe='/')}"


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body as a dict (the first value of each field)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "a UI form is sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, f"a UI form is at most {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form is not valid url-encoded text") from None
    form: dict[str, str] = {}
    for k, v in pairs:
        form.setdefault(k, v)
    return form


def _first(request: Request, header: str) -> str:
    return request.headers.get(header, "").split(",")[0].strip()


def is_https(request: Request) -> bool:
    """Whether the browser reached the server over HTTPS: directly, or through a reverse proxy that
    ends TLS and says so in `X-Forwarded-Proto`."""
    return request.url.scheme == "https" or _first(request, "x-forwarded-proto").lower() == "https"


def check_origin(request: Request, what: str = "form") -> None:
    """Refuse (403) a POST whose `Origin` is another site or opaque ("null"). Its own origin is
    `scheme://Host` or, behind a reverse proxy that rewrites the Host, `X-Forwarded-Proto://
    X-Forwarded-Host` (a page of another site cannot set those headers on a form it posts; the CSRF
    token is required all the same). A request without Origin (not sent by every browser) passes."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null":
        raise HTTPException(403, f"{what} posted from an opaque origin: refused")
    own = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    proto, host = _first(request, "x-forwarded-proto"), _first(request, "x-forwarded-host")
    if proto and host:
        own.add(f"{proto.lower()}://{host}")
    if origin not in own:
        raise HTTPException(403, f"{what} posted from another origin ({origin}): refused")


def check_form(request: Request, viewer: Viewer, form: dict[str, str]) -> None:
    """Refuse (403) a POST whose CSRF token is wrong or whose Origin is another site."""
    check_origin(request)
    given = form.get("csrf", "")
    if not viewer.csrf or not hmac.compare_digest(given.encode(), viewer.csrf.encode()):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")


def set_session(response: Response, request: Request, token: str) -> None:
    """Set the session cookie `token` on `response`."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_session(response: Response) -> None:
    """Delete the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def set_csrf_cookie(response: Response, request: Request, value: str) -> None:
    """Set an open UI's CSRF cookie (double submit) on `response`."""
    response.set_cookie(
        CSRF_COOKIE,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
