"""Signing in and out (the browser's session cookie), and who is signed in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from verilabel.server.auth import Viewer, close_session, open_session, user_for_token
from verilabel.server.payloads import SignIn

public = APIRouter(tags=["session"])
router = APIRouter(tags=["session"])


@public.post("/session")
def sign_in(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
    """Exchange a token for a session cookie (HttpOnly, SameSite=Strict)."""
    user = user_for_token(request, body.token.strip())
    if user is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    open_session(request, response, user)
    return user.to_json()


@router.delete("/session")
def sign_out(who: Viewer, request: Request, response: Response) -> dict[str, Any]:
    close_session(request, response)
    return {"signed_out": who.user.name}


@router.get("/me")
def me(who: Viewer) -> dict[str, Any]:
    return who.user.to_json() | {"via": who.via}
