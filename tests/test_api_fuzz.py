"""The API fuzzed from its own OpenAPI document (schemathesis, bounded): whatever the input, no 500, and every
answer's content type is the one documented. Runs as an editor against a dataset with a run in review."""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance  # noqa: E402

from tests.review_helpers import synthetic_run  # noqa: E402
from tests.server_helpers import Served, serve  # noqa: E402
from verilabel.store import Store  # noqa: E402


@pytest.fixture
def served_with_a_run(store: Store, home: Path, tmp_path: Path) -> Served:
    synthetic_run(store, tmp_path, [(0, "car", 0.9), (1, "dog", 0.4), (2, "car", 0.2)])
    return serve(store, home, allowed_hosts=("testserver",))  # the host name schemathesis's ASGI client sends


@pytest.mark.slow
def test_the_api_never_fails_with_a_server_error(served_with_a_run: Served):
    """Every operation, with examples hypothesis generates from its schema (schemathesis's pytest plugin does not
    run on this pytest: its strategies are driven directly)."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", served_with_a_run.app)
    # Deleting runs and users or replacing tokens would only shrink what the other calls can reach.
    schema = schema.exclude(method="DELETE").exclude(path_regex="/users/.*/token")
    headers = {"Authorization": f"Bearer {served_with_a_run.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error, content_type_conformance])

        call()
