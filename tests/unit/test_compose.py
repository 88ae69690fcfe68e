"""docker-compose.yml, the Dockerfile and the README agree with the code.

- every service built from this repository runs a command the ``kaquan`` CLI really has;
- every ``KAQUAN_*`` variable the compose file sets or interpolates is a real Settings field;
- the image's entrypoint is the ``kaquan`` console script declared in pyproject.toml;
- the README's configuration table lists every Settings field (and no field that does not exist);
- docs/api.md's scope table lists exactly the scopes of ``tenants.scopes.SCOPES``.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
KAQUAN_VAR = re.compile(r"\bKAQUAN_[A-Z0-9_]+\b")
# Read by load_settings() but not a Settings field: the path of the optional settings file.
NOT_SETTINGS = {"KAQUAN_CONFIG"}


def _settings_vars() -> set[str]:
    return {f"KAQUAN_{f.name.upper()}" for f in msgspec.structs.fields(Settings)}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _built_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services whose image is built from this repository (they run the ``kaquan`` entrypoint)."""
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def _command_words(command: str | list[str]) -> list[str]:
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    if words and words[0] == "kaquan":
        words = words[1:]
    return [w for w in words if not w.startswith("-")]


def _dockerfile_instruction(name: str) -> str:
    """The last ``NAME ...`` instruction of the Dockerfile (line continuations joined)."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    found = [
        line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.strip().upper().startswith(name + " ")
    ]
    assert found, f"the Dockerfile has no {name} instruction"
    return found[-1]


def test_compose_has_the_service_mode_services_and_built_ones_run_real_cli_commands() -> None:
    from core.cli import command_names

    doc = _compose()
    assert {"postgres", "redis", "migrate", "api", "worker", "scheduler"} <= set(doc["services"])
    built = _built_services(doc)
    assert {"migrate", "api", "worker", "scheduler"} <= set(built)
    known = command_names()
    for name, svc in built.items():
        assert "command" in svc, f"service {name} relies on the image's default command; make it explicit"
        words = _command_words(svc["command"])
        # the longest known command path the words start with, e.g. "tenants list" or "serve"
        matches = [" ".join(words[:n]) for n in range(len(words), 0, -1) if " ".join(words[:n]) in known]
        assert matches, f"service {name} runs `kaquan {' '.join(words)}`, which is not a CLI command"


def test_compose_roles_and_order() -> None:
    doc = _compose()
    services = doc["services"]
    assert _command_words(services["migrate"]["command"])[:1] == ["migrate"]
    assert "KAQUAN_DATABASE_OWNER_URL" in services["migrate"]["environment"]
    for name in ("api", "worker", "scheduler"):
        env = services[name]["environment"]
        assert "KAQUAN_DATABASE_OWNER_URL" not in env, f"{name} must not hold the owner's credentials"
        assert str(env["KAQUAN_DATABASE_URL"]).startswith("postgresql+asyncpg://kaquan_app:")
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert _command_words(services["api"]["command"])[:1] == ["serve"]
    assert "0.0.0.0" in services["api"]["command"]


def test_every_kaquan_variable_in_compose_is_a_settings_field() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(KAQUAN_VAR.findall(body))
    assert used, "the compose file configures nothing?"
    unknown = used - _settings_vars() - NOT_SETTINGS
    assert not unknown, f"not Settings fields (typo, or rename the variable): {sorted(unknown)}"


def test_dockerfile_entrypoint_is_the_kaquan_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts.get("kaquan") == "core.cli:main"
    entrypoint = _dockerfile_instruction("ENTRYPOINT")
    words = json.loads(entrypoint) if entrypoint.startswith("[") else shlex.split(entrypoint)
    assert words == ["kaquan"], f"ENTRYPOINT should be the kaquan script, is {entrypoint}"
    assert _dockerfile_instruction("FROM").startswith("python:3.11-slim")
    assert _dockerfile_instruction("USER").split(":")[0] not in ("root", "0")
    assert "pip install ." in DOCKERFILE.read_text(encoding="utf-8")


def test_readme_configuration_table_lists_every_setting() -> None:
    if not README.exists():
        pytest.fail("README.md is missing")
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `KAQUAN_")]
    documented = {m.group(0) for line in rows for m in [KAQUAN_VAR.search(line)] if m}
    fields = _settings_vars()
    assert fields - documented == set(), (
        f"settings missing from the README table: {sorted(fields - documented)}"
    )
    assert documented - fields - NOT_SETTINGS == set(), (
        f"README documents unknown settings: {sorted(documented - fields - NOT_SETTINGS)}"
    )


def test_api_guide_scope_table_matches_the_scopes() -> None:
    from tenants.scopes import SCOPES

    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("### Scopes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+:[a-z_]+)` \|", section, flags=re.MULTILINE))
    assert documented == set(SCOPES), (
        f"docs/api.md scopes: missing {sorted(set(SCOPES) - documented)}, unknown {sorted(documented - set(SCOPES))}"
    )
