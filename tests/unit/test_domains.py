"""Every domain declares itself once (``<domain>/plugin.py``), and everything central collects from that.

- each declaration resolves, and nothing is declared twice;
- every controller, model module and job module in the tree is declared by exactly one domain, so a new
  one that is not declared fails here rather than silently missing from the app, worker or migrations;
- the composition modules (app, consoles' and H5 routers, model and job registries, scheduler) name no
  domain module: a new domain is one folder plus one line in :data:`core.domains.DOMAINS`;
- a throwaway domain added by that one line gets its API route, console page, job, periodic task, event
  type, scope and permission.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import domains as registry
from core.app import create_app
from core.domains import DOMAINS, Domain, domains, handlers, resolve
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tenants", "admin_ui", "h5")


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            yield name, ast.parse(path.read_text(encoding="utf-8"))


def _declared(kind: str) -> list[str]:
    return [ref for d in domains() for ref in getattr(d, kind)]


def test_every_declaration_resolves_and_names_are_unique() -> None:
    assert len({d.name for d in domains()}) == len(DOMAINS)
    for kind in ("api", "console", "platform", "h5"):
        refs = _declared(kind)
        assert len(refs) == len(set(refs)), f"a {kind} controller is declared twice"
        assert all(isinstance(resolve(ref), type) for ref in refs)
    for kind in ("models", "jobs"):
        modules = _declared(kind)
        assert len(modules) == len(set(modules)), f"a {kind} module is declared twice"
    registry.event_types()
    registry.scopes()
    registry.role_permissions()
    registry.periodic_tasks()


def test_every_controller_in_the_tree_is_declared_by_one_domain() -> None:
    found: set[str] = set()
    for name, tree in _modules():
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id == "Controller" for b in node.bases
            ):
                found.add(f"{name}:{node.name}")
    declared = {ref for kind in ("api", "console", "platform", "h5") for ref in _declared(kind)}
    assert found == declared, f"undeclared: {sorted(found - declared)}; stale: {sorted(declared - found)}"


def test_every_model_and_job_module_is_declared() -> None:
    models: set[str] = set()
    jobs: set[str] = set()
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in s.targets)
                for s in node.body
            ):
                models.add(name)
            if isinstance(node, ast.AsyncFunctionDef) and any(
                (isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "job")
                or (isinstance(d, ast.Name) and d.id == "job")
                for d in node.decorator_list
            ):
                jobs.add(name)
    assert models == set(_declared("models"))
    assert jobs == set(_declared("jobs"))


def test_every_periodic_task_runs_a_declared_job() -> None:
    from core.jobs.registry import load_job_modules

    jobs = load_job_modules()
    for task in registry.periodic_tasks():
        assert task.actor in jobs, f"periodic task {task.name} names no job {task.actor!r}"


COMPOSITION = (
    "core/app.py",
    "admin_ui/routes.py",
    "h5/routes.py",
    "core/db/registry.py",
    "core/jobs/registry.py",
    "core/jobs/scheduler.py",
    "core/events/services.py",
    "tenants/scopes.py",
)


@pytest.mark.parametrize("path", COMPOSITION)
def test_composition_modules_name_no_domain_module(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    leaf = {m.rsplit(".", 1)[-1] for m in imported}
    assert not leaf & {"api", "api_tenant", "api_platform", "jobs", "actors", "plugin"}, imported
    assert not {m for m in imported if m.endswith("_pages")}, imported
    for text in ("_pages", "Controller\n"):
        assert text not in (ROOT / path).read_text(encoding="utf-8").replace("route_handlers", ""), path


def test_require_permission_and_scope_refuse_undeclared_names() -> None:
    from tenants.guards import require_permission, require_scope

    with pytest.raises(ValueError, match="declared by no domain"):
        require_permission("catalog.mange")
    with pytest.raises(ValueError, match="declared by no domain"):
        require_scope("catalog:wirte")


def test_two_domains_cannot_declare_one_event_type(monkeypatch: pytest.MonkeyPatch) -> None:
    twice = (*domains(), Domain(name="echo", events={"stock.low": "again"}))
    monkeypatch.setattr(registry, "domains", lambda: twice)
    with pytest.raises(ValueError, match="declared by two domains"):
        registry.event_types()


NEW_DOMAIN = {
    "kq_sample/__init__.py": "",
    "kq_sample/plugin.py": """
        import datetime as dt

        from core.domains import ADMINS, Domain, Periodic

        domain = Domain(
            name="sample",
            api=("kq_sample.api:SampleController",),
            console=("kq_sample.pages:SamplePage",),
            jobs=("kq_sample.jobs",),
            periodic=(Periodic("sample_sweep", "sample_sweep", dt.timedelta(hours=1)),),
            events={"sample.happened": "Something happened."},
            scopes={"sample:read": "Read samples."},
            permissions={"sample.read": ADMINS},
        )
    """,
    "kq_sample/api.py": """
        from litestar import Controller, get

        class SampleController(Controller):
            path = "/api/v1/sample"

            @get("/", sync_to_thread=False)
            def ping(self) -> dict[str, str]:
                return {"sample": "ok"}
    """,
    "kq_sample/pages.py": """
        from litestar import Controller, get

        class SamplePage(Controller):
            path = "/sample"

            @get("/", sync_to_thread=False, include_in_schema=False)
            def page(self) -> str:
                return "sample page"
    """,
    "kq_sample/jobs.py": """
        from core.jobs.registry import job

        @job("sample_sweep")
        async def sample_sweep() -> None:
            return None
    """,
}


@pytest.fixture
def sample_domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for rel, text in NEW_DOMAIN.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "DOMAINS", (*DOMAINS, "kq_sample"))  # the one line
    domains.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        domains.cache_clear()
        for name in [m for m in sys.modules if m == "kq_sample" or m.startswith("kq_sample.")]:
            del sys.modules[name]


async def test_a_new_domain_is_one_folder_and_one_line(sample_domain: None, settings: Settings) -> None:
    assert registry.event_types()["sample.happened"] == "Something happened."
    assert registry.scopes()["sample:read"] == "Read samples."
    assert "sample.read" in registry.role_permissions()["owner"]
    assert "sample.read" not in registry.role_permissions()["viewer"]
    assert "kq_sample.jobs" in registry.job_modules()
    assert any(p.actor == "sample_sweep" for p in registry.periodic_tasks())
    assert resolve("kq_sample.api:SampleController") in handlers("api")

    app = create_app(settings)
    paths = {route.path for route in app.routes}
    assert {"/api/v1/sample", "/console/sample"} <= paths
    await app.state.kernel.close()
