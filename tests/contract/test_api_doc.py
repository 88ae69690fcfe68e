"""``docs/api.md`` names every operation of the served OpenAPI document, and nothing that is not in it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = "GET|POST|PUT|PATCH|DELETE"
_PATH = r"(/(?:api|oauth)/[^\s`?|#)]*)[^\s`|]*"
#: The first cell of an endpoint table row: "`POST /api/v1/members`", "`GET` / `PUT /api/v1/reminder-settings`"
TABLE_CELL = re.compile(rf"^`((?:(?:{METHODS})`?\s*/\s*`?)*(?:{METHODS}))\s+{_PATH}`$")
#: A line of a code block that starts with the endpoint: "GET /api/v1/risk/rules", "DELETE /api/v1/x/{id}   # 204"
CODE_LINE = re.compile(rf"^({METHODS})\s+{_PATH}(?:\s|$)")


def _normalise(path: str) -> str:
    """Path parameters compared by position only: ``{id}`` and ``{member_id}`` are the same."""
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/.,;:") or "/")


def documented_endpoints(text: str) -> set[tuple[str, str]]:
    """Endpoints named by the first cell of a table row or at the start of a line (prose mentions aside)."""
    found: set[tuple[str, str]] = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|"):
            match = TABLE_CELL.match(line.split("|")[1].strip())
        else:
            match = CODE_LINE.match(line)
        if match:
            for method in re.findall(METHODS, match.group(1)):
                found.add((method, _normalise(match.group(2))))
    return found


def test_the_parser_reads_tables_code_lines_and_method_pairs() -> None:
    text = (
        "| `GET /api/v1/products?kind=&q=` | x |\n"
        "GET /api/v1/risk/rules\n"
        "| `GET` / `PUT /api/v1/reminder-settings` | y |\n"
        "DELETE /api/v1/risk/blocklist/{id}            # 204\n"
        "| products (`POST`/`PATCH /api/v1/products`, product bodies) | prose, not an endpoint |\n"
        "the same service as `POST /api/v1/grants` (prose)\n"
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
