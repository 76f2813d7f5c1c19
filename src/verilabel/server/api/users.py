"""Users and their tokens (admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from verilabel import accounts
from verilabel.server.api.deps import StoreDep
from verilabel.server.auth import Admin
from verilabel.server.payloads import UserCreate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("")
def list_users(who: Admin, store: StoreDep) -> list[dict[str, Any]]:
    return [user.to_json() for user in accounts.list_users(store)]


@router.post("", status_code=201)
def add_user(body: UserCreate, who: Admin, store: StoreDep) -> dict[str, Any]:
    """A new user; the answer holds their token, shown this once."""
    user, token = accounts.add_user(store, body.name, body.role)
    return user.to_json() | {"token": token}


@router.delete("/{name}")
def remove_user(name: str, who: Admin, store: StoreDep) -> dict[str, Any]:
    accounts.remove_user(store, name)
    return {"removed": name}


@router.post("/{name}/token")
def rotate_token(name: str, who: Admin, store: StoreDep) -> dict[str, Any]:
    return {"name": name, "token": accounts.rotate_token(store, name)}
