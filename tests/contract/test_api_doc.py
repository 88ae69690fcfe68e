"""``docs/api.md`` names every operation of the served OpenAPI document, and nothing that is not in it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = "GET|POST|PUT|PATCH|DELETE"
#: "`POST /api/v1/members`", "GET /api/v1/risk/rules", "`GET` / `PUT /api/v1/reminder-settings`"
ENDPOINT = re.compile(rf"\b((?:{METHODS})(?:`?\s*/\s*`?(?:{METHODS}))*)\s+(/(?:api|oauth)/[^\s`?|#)]*)")


def _normalise(path: str) -> str:
    """Path parameters compared by position only: ``{id}`` and ``{member_id}`` are the same."""
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/.,;:") or "/")


def documented_endpoints(text: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for methods, path in ENDPOINT.findall(text):
        for method in re.findall(METHODS, methods):
            found.add((method, _normalise(path)))
    return found


def test_the_parser_reads_tables_code_lines_and_method_pairs() -> None:
    text = (
        "| `GET /api/v1/products?kind=&q=` | x |\n"
        "GET /api/v1/risk/rules\n"
        "| `GET` / `PUT /api/v1/reminder-settings` | y |\n"
        "DELETE /api/v1/risk/blocklist/{id}            # 204\n"
    )
    assert documented_endpoints(text) == {
        ("GET", "/api/v1/products"),
        ("GET", "/api/v1/risk/rules"),
        ("GET", "/api/v1/reminder-settings"),
        ("PUT", "/api/v1/reminder-settings"),
        ("DELETE", "/api/v1/risk/blocklist/{}"),
    }


async def test_api_doc_and_openapi_name_the_same_operations(client: httpx.AsyncClient) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    served = {
        (method.upper(), _normalise(path))
        for path, item in r.json()["paths"].items()
        for method in item
        if method.upper() in METHODS.split("|")
    }
    documented = documented_endpoints(DOC.read_text(encoding="utf-8"))
    missing = sorted(served - documented)
    unknown = sorted(documented - served)
    assert not missing, f"docs/api.md lacks: {missing}"
    assert not unknown, f"docs/api.md names operations the API does not have: {unknown}"
