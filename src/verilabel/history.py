"""Who changed what, and when: every mutation of the review workflow, from the CLI or the HTTP API.

An actor is a user's name for the API, ``cli:LOGIN`` for the command line. Events are written in the transaction
that makes the change, so the history never claims what did not happen (or misses what did).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from verilabel.store import Store
from verilabel.store.schema import EventRow


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (some containers)
        return "cli"


def record(
    session: Session,
    action: str,
    *,
    actor: str | None = None,
    dataset_id: int | None = None,
    run_id: str | None = None,
    **details: Any,
) -> None:
    session.add(
        EventRow(
            at=datetime.now(UTC),
            actor=actor or cli_actor(),
            action=action,
            dataset_id=dataset_id,
            run_id=run_id,
            details=details,
        )
    )


@dataclass(frozen=True)
class Event:
    at: datetime
    actor: str
    action: str
    run_id: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "run": self.run_id,
            "details": self.details,
        }


def events(store: Store, *, run_id: str | None = None, dataset_id: int | None = None, limit: int = 200) -> list[Event]:
    """The newest events first, of a run or of a dataset."""
    query = select(EventRow).order_by(EventRow.at.desc(), EventRow.id.desc()).limit(limit)
    if run_id is not None:
        query = query.where(EventRow.run_id == run_id)
    if dataset_id is not None:
        query = query.where(EventRow.dataset_id == dataset_id)
    with store.read() as session:
        return [
            Event(
                row.at.replace(tzinfo=UTC) if row.at.tzinfo is None else row.at,
                row.actor,
                row.action,
                row.run_id,
                dict(row.details or {}),
            )
            for row in session.scalars(query)
        ]
