"""Static checks of the container deployment (no Docker engine is needed).

The Dockerfile must install the project the way pyproject.toml declares it, and
docker-compose.yml must wire the service to a healthy Postgres.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Parse the Dockerfile into (INSTRUCTION, arguments), joining continuation lines."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def arguments(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def declared_sources(pyproject: dict[str, Any]) -> list[str]:
    """The files and directories setuptools packages according to pyproject.toml."""
    setuptools = pyproject["tool"]["setuptools"]
    modules = [f"{name}.py" for name in setuptools.get("py-modules", [])]
    packages = [pattern.rstrip(".*") for pattern in setuptools["packages"]["find"]["include"]]
    return ["pyproject.toml", pyproject["project"]["readme"], *modules, *packages]


def copied_sources() -> set[str]:
    copied: set[str] = set()
    for args in arguments("COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        copied.update(p.rstrip("/") for p in parts[:-1])
    return copied


def test_pyproject_declares_the_packages_the_image_needs(pyproject: dict[str, Any]) -> None:
    sources = declared_sources(pyproject)

    assert {"graphflow_core", "service", "workflows", "graphflow.py"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source


def test_dockerfile_builds_from_python_311_slim() -> None:
    assert arguments("FROM") == ["python:3.11-slim"]


def test_dockerfile_copies_every_source_pyproject_packages(pyproject: dict[str, Any]) -> None:
    missing = set(declared_sources(pyproject)) - copied_sources()

    assert not missing, f"Dockerfile does not COPY {sorted(missing)}"


def test_dockerfile_pip_installs_the_project_after_copying_it() -> None:
    kinds = [kw for kw, _ in dockerfile_instructions()]
    install = next(
        i
        for i, (kw, args) in enumerate(dockerfile_instructions())
        if kw == "RUN" and re.search(r"\bpip install \.(\s|$)", args)
    )

    assert max(i for i, kind in enumerate(kinds) if kind == "COPY") < install


def test_dockerignore_does_not_exclude_copied_sources() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    for source in copied_sources():
        excluded = [p for p in patterns if fnmatch.fnmatch(source, p.lstrip("/"))]
        assert not excluded, f"{source} is excluded by {excluded}"
    assert {".venv", ".git", "tests"} <= set(patterns)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    users = [(i, args) for i, (kw, args) in enumerate(instructions) if kw == "USER"]
    last_run = max(i for i, (kw, _) in enumerate(instructions) if kw == "RUN")

    assert users, "no USER instruction"
    index, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert index > last_run


def test_dockerfile_serves_with_the_declared_console_script(pyproject: dict[str, Any]) -> None:
    [cmd] = arguments("CMD")

    command = json.loads(cmd)
    assert command[0] in pyproject["project"]["scripts"]
    assert command == ["graphflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert arguments("EXPOSE") == ["8000"]


def test_dockerfile_healthcheck_queries_healthz_with_urllib() -> None:
    [healthcheck] = arguments("HEALTHCHECK")

    assert "CMD" in healthcheck
    assert "urllib.request" in healthcheck
    assert "http://127.0.0.1:8000/healthz" in healthcheck


ROLES = ("migrate", "api", "worker")


def test_compose_defines_postgres_a_migration_an_api_and_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert set(services) == {"postgres", *ROLES}
    assert services["postgres"]["image"] == "postgres:16-alpine"
    for role in ROLES:  # one image serves every role
        assert services[role]["build"] == "."
        assert services[role]["image"] == "graphflow:latest"
        assert services[role]["command"][:2] == ["graphflow", role]


def test_compose_postgres_is_health_checked_with_pg_isready(compose: dict[str, Any]) -> None:
    healthcheck = compose["services"]["postgres"]["healthcheck"]

    assert "pg_isready" in " ".join(healthcheck["test"])


def test_compose_migrates_once_postgres_is_healthy_before_api_and_workers_start(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for role in ("api", "worker"):
        assert services[role]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }


def test_compose_api_has_its_own_healthz_healthcheck(compose: dict[str, Any]) -> None:
    test = compose["services"]["api"]["healthcheck"]["test"]

    assert test[0] == "CMD"
    assert "/healthz" in " ".join(test)


def test_compose_worker_health_checks_the_file_it_renews(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    health_file = worker["command"][worker["command"].index("--health-file") + 1]
    test = worker["healthcheck"]["test"]

    assert test[:3] == ["CMD", "graphflow", "health"]
    assert test[test.index("--file") + 1] == health_file


def test_compose_workers_scale_without_fixed_names_or_ports(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]

    assert "container_name" not in worker and "ports" not in worker
    assert "GRAPHFLOW_MAX_CONCURRENT_RUNS" in worker["environment"]


def test_compose_database_url_uses_psycopg_and_a_required_password(
    compose: dict[str, Any],
) -> None:
    postgres_env = compose["services"]["postgres"]["environment"]
    assert postgres_env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for role in ROLES:
        url = compose["services"][role]["environment"]["GRAPHFLOW_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://graphflow:")
        assert url.endswith("@postgres:5432/graphflow")
        assert "${POSTGRES_PASSWORD:?" in url


def test_compose_environment_names_real_service_settings(compose: dict[str, Any]) -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    for role in ROLES:
        for name in compose["services"][role]["environment"]:
            assert name.startswith(prefix)
            assert name.removeprefix(prefix).lower() in Settings.model_fields, name


def test_compose_publishes_the_port_the_image_serves(compose: dict[str, Any]) -> None:
    [mapping] = compose["services"]["api"]["ports"]

    assert str(mapping).rsplit(":", 1)[1] == arguments("EXPOSE")[0]


def test_compose_roles_are_commands_of_the_cli() -> None:
    from typer.main import get_command

    from service.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {"serve", "api", "worker", "migrate", "health"} <= commands
