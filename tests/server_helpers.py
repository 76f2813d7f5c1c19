"""The app in-process (an httpx client on its ASGI interface) with a user of each role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from verilabel import accounts
from verilabel.server.app import create_app
from verilabel.server.settings import ServerSettings
from verilabel.store import Store

BASE = "http://127.0.0.1:8151"


@dataclass
class Served:
    app: FastAPI
    settings: ServerSettings
    tokens: dict[str, str]  # role -> a user's token

    def client(self, role: str | None = None) -> TestClient:
        """A client sending ``role``'s token (none: anonymous)."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return TestClient(self.app, base_url=BASE, headers=headers)


def serve(store: Store, home: Path, *, allowed_hosts: tuple[str, ...] = ()) -> Served:
    tokens = {role: accounts.add_user(store, f"{role}-user", role)[1] for role in accounts.ROLES}
    settings = ServerSettings(allowed_hosts=allowed_hosts)
    return Served(create_app(settings, store, home), settings, tokens)
