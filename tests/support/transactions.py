"""A rival writer for concurrency tests: another transaction, open while the code under test runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from verilabel.store import Store


@contextmanager
def rival_transaction(store: Store, work: Callable[[Session], None], hold: float = 1.0) -> Iterator[None]:
    """Inside the block, another thread's write transaction has done ``work`` (taking its locks) and stays open:
    it commits ``hold`` seconds after the block starts, or when the block ends if that comes first."""
    done, release = threading.Event(), threading.Event()

    def rival() -> None:
        with store.write() as session:
            work(session)
            session.flush()
            done.set()
            release.wait(hold)

    thread = threading.Thread(target=rival)
    thread.start()
    assert done.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join()
