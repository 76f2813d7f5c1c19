"""Who is asking: a user's token (``Authorization: Bearer``), the launch token, or a browser session cookie.

Routes are closed by default: ``create_app`` attaches ``require("viewer")`` to every API router, and each route that
changes something adds its own stricter requirement (``Editor``, ``Admin``). A 401 says how to authenticate
(``WWW-Authenticate: Bearer``); a 403 says which role is missing.

A browser's session cookie is ``HttpOnly`` and ``SameSite=Strict``; a change made with it must also carry the header
``X-Verilabel: 1``, which the app sends and which a cross-site form or image cannot (CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response

from verilabel import accounts
from verilabel.accounts import User

SESSION_COOKIE = "verilabel_session"
CSRF_HEADER = "x-verilabel"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LAUNCH_USER = User("local", "admin")  # whoever started the server (they hold its launch token)


@dataclass(frozen=True)
class Principal:
    user: User
    via: str  # "token" or "session"

    @property
    def actor(self) -> str:
        """The name the history records."""
        return self.user.name


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_for_token(request: Request, token: str) -> User | None:
    launch = request.app.state.settings.launch_token
    if hmac.compare_digest(token.encode(), launch.encode()):
        return LAUNCH_USER
    return accounts.user_for_token(request.app.state.store, token)


def open_session(request: Request, response: Response, user: User) -> None:
    """Sign the browser in: a random cookie, its hash kept server-side (in memory for the launch user)."""
    if user is LAUNCH_USER:
        cookie = secrets.token_urlsafe(32)
        request.app.state.launch_sessions[_digest(cookie)] = time.time() + accounts.SESSION_LIFETIME.total_seconds()
    else:
        cookie = accounts.open_session(request.app.state.store, user.name)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.secure_cookies,
        path="/",
    )


def close_session(request: Request, response: Response) -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        request.app.state.launch_sessions.pop(_digest(cookie), None)
        accounts.close_session(request.app.state.store, cookie)
    response.delete_cookie(SESSION_COOKIE, path="/")


def _session_user(request: Request, cookie: str) -> User | None:
    expires = request.app.state.launch_sessions.get(_digest(cookie))
    if expires is not None:
        return LAUNCH_USER if expires > time.time() else None
    return accounts.user_for_session(request.app.state.store, cookie)


def _unauthenticated(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("send `Authorization: Bearer TOKEN` (`verilabel users add NAME` makes a token)")
        user = user_for_token(request, token.strip())
        if user is None:
            raise _unauthenticated("unknown or revoked token: `verilabel users token NAME` makes a new one")
        return Principal(user, "token")
    cookie = request.cookies.get(SESSION_COOKIE)
    user = _session_user(request, cookie) if cookie else None
    if user is None:
        raise _unauthenticated("sign in: open the URL `verilabel serve` prints, or send `Authorization: Bearer TOKEN`")
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        raise HTTPException(403, "cross-site request refused: changes made with a session need the X-Verilabel header")
    return Principal(user, "session")


def require(role: str) -> Callable[..., Any]:
    """A dependency that passes principals holding ``role`` (or a higher one)."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.user.can(role):
            raise HTTPException(403, f"{who.user.name} is a {who.user.role}: this needs the {role} role")
        return who

    check.__name__ = f"require_{role}"
    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Editor = Annotated[Principal, Depends(require("editor"))]
Admin = Annotated[Principal, Depends(require("admin"))]
