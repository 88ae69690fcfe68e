"""Every hook, connector method and contract of the partner SDK is documented in docs/partners.md."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pluggy
import pytest

import plugins
from plugins import hookspecs, protocols

DOC = Path(__file__).resolve().parents[2] / "docs" / "partners.md"


def hook_names(module: types.ModuleType) -> list[str]:
    """The hookspecs declared in ``module`` (functions carrying the ``kaquan`` spec marker)."""
    return sorted(name for name, obj in vars(module).items() if callable(obj) and hasattr(obj, "kaquan_spec"))


def undocumented_hooks(module: types.ModuleType, doc: str) -> list[str]:
    """Hooks without a heading of their own (``### `kaquan_x()` ``) in the guide."""
    return [h for h in hook_names(module) if not re.search(rf"^#+ +`{re.escape(h)}\(", doc, re.MULTILINE)]


def connector_methods() -> list[str]:
    """``Protocol.method`` for every method a connector may implement (async per kind, or optional)."""
    names = []
    for name, obj in vars(protocols).items():
        if inspect.isclass(obj) and obj.__module__ == protocols.__name__:
            for meth, fn in vars(obj).items():
                if inspect.isfunction(fn) and not meth.startswith("_"):
                    names.append(f"{name}.{meth}")
    return sorted(names)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_there_are_hooks_to_document():
    assert "kaquan_connectors" in hook_names(hookspecs)


def test_every_hook_is_documented(doc):
    assert undocumented_hooks(hookspecs, doc) == []


def test_an_undocumented_hook_is_caught(doc):
    spec = pluggy.HookspecMarker("kaquan")
    fake = types.ModuleType("fake_hookspecs")

    @spec
    def kaquan_not_in_the_guide() -> None:
        """A hook nobody documented."""

    fake.kaquan_not_in_the_guide = kaquan_not_in_the_guide  # type: ignore[attr-defined]
    assert undocumented_hooks(fake, doc) == ["kaquan_not_in_the_guide"]


def test_every_connector_method_is_documented(doc):
    methods = connector_methods()
    assert {"Notifier.send", "PlatformConfigurable.platform_config"} <= set(methods)
    missing = [m for m in methods if not re.search(rf"^#+ +`{re.escape(m)}\(", doc, re.MULTILINE)]
    assert missing == []


def test_every_exported_contract_is_documented(doc):
    exported = [n for n in plugins.__all__ if n[0].isupper() and not n.isupper()]
    missing = [n for n in exported if f"`{n}`" not in doc]
    assert missing == []


def test_hookspecs_have_docstrings_and_type_hints():
    for name in hook_names(hookspecs):
        fn = getattr(hookspecs, name)
        assert inspect.getdoc(fn), f"{name} needs a docstring"
        assert "return" in fn.__annotations__, f"{name} needs a return type"
