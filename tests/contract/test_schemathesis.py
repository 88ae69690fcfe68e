"""Schemathesis against the served OpenAPI document (``/schema/openapi.json``), in process over ASGI.

Every operation is called with schemathesis' coverage cases (boundary and just-out-of-bounds values of
every parameter and field) and with generated inputs, valid and invalid (bounded, derandomized, no
shrinking), with a real token: the tenant's API client holding every scope for ``/api/v1`` and an
operator token for ``/api/platform/v1``. Each answer must not be a server error and must conform to
the document: a documented status, a documented content type and a body matching its schema, error
bodies (``ProblemDetails``) included.

The app under test is a second instance on the same database, driven by schemathesis on its own event
loop thread (its database connections are made there); its rate limit per client is lifted so the run
exercises the operations rather than the limiter.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import hypothesis
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity
from schemathesis.checks import not_a_server_error

# The coverage phase has no public entry outside the pytest plugin and the CLI; this is what both use.
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.app import create_app
from tests.conftest import unique

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Examples per operation and generation mode; raise it locally for a deeper run.
MAX_EXAMPLES = int(os.environ.get("KAQUAN_SCHEMATHESIS_EXAMPLES", "10"))
#: Operations left out, each with the defect that keeps it out (none today).
EXCLUDED: dict[str, str] = {}
#: Requests made by the run, per phase (printed, and checked so that a silently empty run fails).
CALLS: dict[str, int] = {"coverage": 0, "positive": 0, "negative": 0}


@pytest.fixture
async def contract_auth(
    client: httpx.AsyncClient, make_tenant: Any, make_api_client: Any, operator: Any
) -> dict[str, dict[str, str]]:
    """A tenant on a plan whose rate limit the run cannot reach, its all-scope client, and an operator."""
    plan = unique("contract-")
    r = await client.post(
        "/api/platform/v1/plans",
        json={"code": plan, "name": "Contract run", "requests_per_minute": 1_000_000, "max_api_clients": 5},
        headers=operator.headers,
    )
    assert r.status_code == 201, r.text
    tenant = await make_tenant(plan=plan)
    creds = await make_api_client(tenant)  # every scope
    return {"tenant": creds.headers, "operator": operator.headers}


def _headers_for(path: str, auth: dict[str, dict[str, str]]) -> dict[str, str]:
    if path.startswith("/api/platform/v1"):
        return auth["operator"]
    return auth["tenant"]


def _exercise(operation: Any, mode: schemathesis.GenerationMode, headers: dict[str, str]) -> list[str]:
    """Run ``operation`` with up to ``MAX_EXAMPLES`` generated cases; the first failure is reported."""
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        if failures:
            return
        CALLS[mode.value] += 1
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label} [{mode.value}]: {exc}\n  {case.as_curl_command(headers)}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # nothing invalid can be made for an operation without parameters or body
        assert mode is schemathesis.GenerationMode.NEGATIVE, f"{operation.label}: no valid input can be generated"
    return failures


def _cover(operation: Any, project: Any, headers: dict[str, str]) -> list[str]:
    """Schemathesis' coverage phase: boundary and just-out-of-bounds values of every parameter and field."""
    failures: list[str] = []

    def check(case: schemathesis.Case) -> None:
        if failures or case.method.upper() != operation.method.upper():
            return  # the unexpected-method cases are Litestar's 405, not this document's
        CALLS["coverage"] += 1
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label} [coverage]: {exc}\n  {case.as_curl_command(headers)}")

    config = HypothesisTestConfig(
        project=project,
        modes=[HypothesisTestMode.COVERAGE],
        settings=hypothesis.settings(
            max_examples=1,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        ),
    )
    create_test(operation=operation, test_func=check, config=config)()
    return failures


async def test_every_operation_answers_as_the_served_document_says(
    settings: Any, contract_auth: dict[str, dict[str, str]]
) -> None:
    # The run blocks; the test's own loop keeps serving the session's app (jobs, sealer) meanwhile.
    await asyncio.to_thread(_run_schemathesis, settings, contract_auth)


def _run_schemathesis(settings: Any, contract_auth: dict[str, dict[str, str]]) -> None:
    app = create_app(msgspec.structs.replace(settings, default_rate_limit_per_minute=1_000_000))
    try:
        _check_every_operation(app, contract_auth)
    finally:
        # Stop the second app's jobs, outbox relay and sealer now, not at exit: they would take work
        # queued by later tests away from the session's app.
        asgi.shutdown_lifespans()


def _check_every_operation(app: Any, contract_auth: dict[str, dict[str, str]]) -> None:
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 80, "the document lost operations"
    started = time.monotonic()
    failures: list[str] = []
    for operation in operations:
        if operation.label in EXCLUDED:
            continue
        headers = _headers_for(operation.path, contract_auth)
        failures += _cover(operation, schema.config, headers)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            failures += _exercise(operation, mode, headers)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {len(operations)} operations, {MAX_EXAMPLES} examples per mode, {CALLS}, {elapsed:.0f}s")
    assert min(CALLS.values()) > len(operations), CALLS
    assert not failures, f"{len(failures)} failure(s) in {elapsed:.0f}s:\n\n" + "\n\n".join(failures)
