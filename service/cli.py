"""The ``graphflow`` command: serve the API and/or execute runs, run a graph locally, list
graphs, migrate and vacuum the database."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from graphflow_core import EventKind, NodeEvent
from service.runtime.registry import RegisteredWorkflow, discover
from service.settings import Role, Settings
from service.storage.records import RunError

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(
    help="GraphFlow: run graphs locally or serve them over HTTP.", no_args_is_help=True
)
console = Console()


def _workflows() -> dict[str, RegisteredWorkflow]:
    return discover(Settings().workflow_packages)


Host = Annotated[str, typer.Option(help="Interface to bind.")]
Port = Annotated[int, typer.Option(help="Port to listen on.")]
LogLevel = Annotated[str, typer.Option(help="Log level.")]


def _settings(role: Role) -> Settings:
    """The ``GRAPHFLOW_*`` settings for ``role``; exit 2 naming what is wrong."""
    os.environ["GRAPHFLOW_ROLE"] = role.value  # also read by the app factory uvicorn imports
    try:
        return Settings()
    except ValidationError as exc:
        console.print(f"[red]invalid configuration:[/] {exc}")
        raise typer.Exit(2) from exc


def _serve_http(role: Role, host: str, port: int, log_level: str) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from service.api.security import bind_warning
    from service.observability.logs import uvicorn_log_config

    settings = _settings(role)
    # JSON: uvicorn's loggers and ours write JSON lines (text keeps uvicorn's own config).
    json_logs = settings.log_format == "json"
    config = uvicorn.Config(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        log_config=uvicorn_log_config(log_level) if json_logs else LOGGING_CONFIG,
    )  # configures uvicorn's loggers, so the warning below is formatted like the rest
    warning = bind_warning(host, settings)
    if warning is not None:
        logging.getLogger("uvicorn.error").warning(warning)
    uvicorn.Server(config).run()


@app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8000, log_level: LogLevel = "info") -> None:
    """Serve the HTTP API and execute runs, in one process (configured by GRAPHFLOW_*
    environment variables; the only mode on SQLite).

    Without GRAPHFLOW_API_KEYS it warns that the API is unauthenticated (loudly off loopback).
    """
    _serve_http(Role.ALL, host, port, log_level)


@app.command()
def api(host: Host = "127.0.0.1", port: Port = 8000, log_level: LogLevel = "info") -> None:
    """Serve the HTTP API only: runs it creates are executed by `graphflow worker` processes
    (Postgres only)."""
    _serve_http(Role.API, host, port, log_level)


@app.command()
def worker(
    health_file: Annotated[
        str, typer.Option(help="Touched after every lease renewal; see `graphflow health`.")
    ] = "/tmp/graphflow-worker.health",
    log_level: LogLevel = "info",
) -> None:
    """Execute runs only, no HTTP (Postgres only): GRAPHFLOW_MAX_CONCURRENT_RUNS run slots."""
    from service.observability.logs import configure_logging
    from service.runtime.worker import run_worker

    os.environ.setdefault("GRAPHFLOW_HEALTH_FILE", health_file)
    settings = _settings(Role.WORKER)
    configure_logging(settings.log_format, log_level)
    run_worker(settings)


@app.command()
def health(
    file: Annotated[str, typer.Option(help="A worker's health file.")] = (
        "/tmp/graphflow-worker.health"
    ),
    max_age: Annotated[float, typer.Option(help="Seconds since its last touch.")] = 30.0,
) -> None:
    """Exit 0 when a worker renewed its leases within --max-age seconds, else 1 (saying why)."""
    try:
        age = time.time() - os.path.getmtime(file)
    except OSError as exc:
        console.print(f"[red]unhealthy: no health file {file} ({exc.strerror})[/]")
        raise typer.Exit(1) from exc
    if age > max_age:
        console.print(f"[red]unhealthy: last lease renewal {age:.0f} s ago (> {max_age:g} s)[/]")
        raise typer.Exit(1)
    console.print(f"healthy: last lease renewal {age:.1f} s ago")


@contextlib.contextmanager
def _write_engine() -> Iterator[Engine]:
    """The write engine of GRAPHFLOW_DATABASE_URL, for a one-off command; closed after."""
    from service.storage.sql import SqlRunStore

    store = SqlRunStore(_settings(Role.ALL).database_url, pool_size=1)
    try:
        yield store.write_engine
    finally:
        store.close()


@app.command()
def migrate() -> None:
    """Bring the database (GRAPHFLOW_DATABASE_URL) to the latest schema, then exit."""
    from service.storage.migrations import upgrade

    with _write_engine() as engine:
        upgrade(engine)
    console.print("database is at the latest schema")


@app.command()
def vacuum() -> None:
    """Give the space of deleted runs back to the file system, then exit: VACUUM on SQLite
    (it also turns on incremental auto-vacuum for files created before GraphFlow set it),
    VACUUM (ANALYZE) on Postgres. Writes wait while it runs: use a quiet moment."""
    from service.storage.retention import vacuum as vacuum_database

    with _write_engine() as engine:
        vacuum_database(engine)
    console.print("database vacuumed")


@app.command()
def graphs() -> None:
    """List the registered graphs."""
    table = Table("name", "nodes", "description")
    for wf in _workflows().values():
        table.add_row(wf.name, str(len(wf.graph.nodes)), wf.description)
    console.print(table)


class _Progress:
    """Per-node progress rows, updated from engine events (any thread)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def on_event(self, ev: NodeEvent) -> None:
        with self.lock:
            row = self.rows.setdefault(ev.run_id, {"node": ev.node, "status": "", "ms": ""})
            row["attempt"] = ev.attempt
            if ev.kind == EventKind.STARTED:
                row["status"] = "[yellow]running[/]"
            elif ev.kind == EventKind.COMPLETED:
                row["status"] = "[green]succeeded[/]"
            else:
                row["status"] = "[red]retrying[/]" if ev.retrying else "[red]failed[/]"
            if ev.ended_at is not None:
                row["ms"] = f"{(ev.ended_at - ev.started_at) * 1000:.1f}"

    def table(self) -> Table:
        table = Table("node run", "node", "attempt", "status", "ms")
        with self.lock:
            for rid, row in self.rows.items():
                table.add_row(
                    rid, row["node"], str(row.get("attempt", "")), row["status"], row["ms"]
                )
        return table


@app.command()
def run(
    graph: Annotated[str, typer.Argument(help="Name of a registered graph.")],
    input: Annotated[str, typer.Option("--input", "-i", help="Input state as JSON.")] = "{}",
) -> None:
    """Run a graph in this process, showing live per-node progress, and print the result."""
    workflows = _workflows()
    wf = workflows.get(graph)
    if wf is None:
        console.print(f"[red]unknown graph {graph!r}; known: {', '.join(workflows)}[/]")
        raise typer.Exit(2)
    try:
        data = json.loads(input)
        if not isinstance(data, dict):
            raise ValueError("input must be a JSON object")
        state = wf.validate_input(data)
    except (ValueError, ValidationError) as exc:
        console.print(f"[red]invalid input: {exc}[/]")
        raise typer.Exit(2) from exc
    progress = _Progress()
    started = time.perf_counter()
    result: dict[str, Any] | None = None
    failure: BaseException | None = None
    with Live(progress.table(), console=console, refresh_per_second=10) as live:

        def on_event(ev: NodeEvent) -> None:
            progress.on_event(ev)
            live.update(progress.table())

        try:
            result = wf.graph.invoke(state, on_event=on_event)
        except Exception as exc:
            failure = exc
        live.update(progress.table())
    elapsed = (time.perf_counter() - started) * 1000
    if failure is not None:
        error = RunError.from_exception(failure).to_dict()
        console.print(f"[red]run failed after {elapsed:.1f} ms:[/] {error}")
        raise typer.Exit(1)
    console.print(f"[green]run succeeded in {elapsed:.1f} ms[/]")
    console.print_json(json.dumps(result, default=str))


if __name__ == "__main__":  # pragma: no cover
    app()
