"""Each HTTP channel connector's JSON contract (docs/connectors/<id>.md) names every endpoint it calls, every
callback type it reads, every config field and every capability it declares — the page stays the contract."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from plugins.builtin import ecommerce_channel, locallife_channel, social_channel

ROOT = Path(__file__).resolve().parents[2]


def called_endpoints(module: ModuleType) -> set[str]:
    """The endpoint (first argument after ``ctx``) of every ``_api`` call in the connector's source."""
    source = Path(module.__file__ or "").read_text(encoding="utf-8")
    return set(re.findall(r'self\._api\(\s*ctx,\s*"([^"]+)"', source))


CASES = {
    "ecommerce": (ecommerce_channel, ecommerce_channel.TAGS),
    "locallife": (locallife_channel, locallife_channel.SPI_TYPES),
    "social": (social_channel, social_channel.EVENTS),
}


def undocumented(connector_id: str, doc: str) -> dict[str, list[str]]:
    """What the connector speaks that ``doc`` does not name (in backquotes), by kind."""
    module, inbound = CASES[connector_id]
    info = module.CONNECTOR.info
    found = {
        "endpoints": sorted(called_endpoints(module)),
        "callback types": sorted(inbound),
        "config fields": list(info.config.__struct_fields__),
        "capabilities": sorted(info.capabilities),
    }
    missing = {kind: [n for n in names if f"`{n}`" not in doc] for kind, names in found.items()}
    return {kind: names for kind, names in missing.items() if names}


def page(connector_id: str) -> str:
    return (ROOT / "docs" / "connectors" / f"{connector_id}.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("connector_id", sorted(CASES))
def test_the_contract_page_names_everything_the_connector_speaks(connector_id: str) -> None:
    module, _ = CASES[connector_id]
    assert len(called_endpoints(module)) >= 4, "the connector's endpoints were not found in its source"
    doc = page(connector_id)
    assert undocumented(connector_id, doc) == {}
    assert module.CONNECTOR.info.id == connector_id and f"`{connector_id}`" in doc.splitlines()[0]


def test_a_page_missing_an_endpoint_is_caught() -> None:
    doc = page("ecommerce").replace("`order.virtual.deliver`", "order.virtual.deliver")
    assert undocumented("ecommerce", doc) == {"endpoints": ["order.virtual.deliver"]}
