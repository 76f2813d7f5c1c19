"""Who may use the HTTP API, and with which rights: users with a role and a token, and browser sessions.

Roles, each including the rights of those before it: ``viewer`` reads everything, ``editor`` creates and controls
runs, promotes, undoes, tags and approves, ``admin`` manages users. Tokens and session cookies are random
(256 bits) and stored as their SHA-256 only: a stolen database does not sign anyone in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from verilabel.errors import ConfigError, ConflictError, NotFoundError
from verilabel.store import Store
from verilabel.store.schema import SessionRow, UserRow

ROLES = ("viewer", "editor", "admin")
SESSION_LIFETIME = timedelta(days=14)
TOKEN_PREFIX = "vl_"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: datetime | None = None

    def can(self, role: str) -> bool:
        """This user has ``role``'s rights (an admin can edit, an editor can read)."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def to_json(self) -> dict[str, Any]:
        created = self.created_at.isoformat() if self.created_at else None
        return {"name": self.name, "role": self.role, "created_at": created}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _user(row: UserRow) -> User:
    return User(row.name, row.role, row.created_at)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ConfigError("role", f"{role!r}: choose one of {', '.join(ROLES)}")


def add_user(store: Store, name: str, role: str) -> tuple[User, str]:
    """A new user and their token (shown this once: only its hash is kept)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ConfigError("name", "a user needs a name of 1 to 100 characters")
    _check_role(role)
    token = new_token()
    with store.write() as session:
        if session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
            raise ConflictError(f"user {name!r} exists already; `verilabel users token {name}` gives them a new token")
        row = UserRow(name=name, role=role, token_hash=_digest(token), created_at=datetime.now(UTC))
        session.add(row)
        session.flush()
        user = _user(row)
    return user, token


def list_users(store: Store) -> list[User]:
    with store.read() as session:
        return [_user(row) for row in session.scalars(select(UserRow).order_by(UserRow.name))]


def _row(session: Any, name: str) -> UserRow:
    row = session.scalar(select(UserRow).where(UserRow.name == name))
    if row is None:
        raise NotFoundError(f"no user named {name!r}; `verilabel users list` shows them")
    return row  # type: ignore[no-any-return]


def remove_user(store: Store, name: str) -> None:
    """Remove a user; their token and browser sessions stop working at once."""
    with store.write() as session:
        session.delete(_row(session, name))


def rotate_token(store: Store, name: str) -> str:
    """A new token for the user; the old one and their browser sessions stop working."""
    token = new_token()
    with store.write() as session:
        row = _row(session, name)
        row.token_hash = _digest(token)
        session.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
    return token


def user_for_token(store: Store, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    with store.read() as session:
        row = session.scalar(select(UserRow).where(UserRow.token_hash == _digest(token)))
        return None if row is None else _user(row)


def open_session(store: Store, name: str) -> str:
    """A browser session for the user: the cookie's value (only its hash is kept)."""
    cookie = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with store.write() as session:
        row = _row(session, name)
        session.execute(delete(SessionRow).where(SessionRow.expires_at < now))  # the expired ones go by the way
        session.add(
            SessionRow(id_hash=_digest(cookie), user_id=row.id, created_at=now, expires_at=now + SESSION_LIFETIME)
        )
    return cookie


def user_for_session(store: Store, cookie: str) -> User | None:
    with store.read() as session:
        found = session.execute(
            select(UserRow, SessionRow.expires_at)
            .join(SessionRow, SessionRow.user_id == UserRow.id)
            .where(SessionRow.id_hash == _digest(cookie))
        ).first()
    if found is None:
        return None
    row, expires = found
    expires = expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires
    return _user(row) if expires > datetime.now(UTC) else None


def close_session(store: Store, cookie: str) -> None:
    with store.write() as session:
        session.execute(delete(SessionRow).where(SessionRow.id_hash == _digest(cookie)))
