"""The ``graphflow`` command: serve the API, run a graph locally, list graphs."""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from graphflow_core import EventKind, NodeEvent
from service.runtime.registry import RegisteredWorkflow, discover
from service.settings import Settings
from service.storage.records import RunError

app = typer.Typer(
    help="GraphFlow: run graphs locally or serve them over HTTP.", no_args_is_help=True
)
console = Console()


def _workflows() -> dict[str, RegisteredWorkflow]:
    return discover(Settings().workflow_packages)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (configured by GRAPHFLOW_* environment variables).

    Without GRAPHFLOW_API_KEYS it warns that the API is unauthenticated (loudly off loopback).
    """
    import logging

    import uvicorn

    from service.api.security import bind_warning

    try:
        settings = Settings()
    except ValidationError as exc:
        console.print(f"[red]invalid configuration:[/] {exc}")
        raise typer.Exit(2) from exc
    config = uvicorn.Config(
        "service.app:create_app", factory=True, host=host, port=port, log_level=log_level
    )  # configures uvicorn's loggers, so the warning below is formatted like the rest
    warning = bind_warning(host, settings)
    if warning is not None:
        logging.getLogger("uvicorn.error").warning(warning)
    uvicorn.Server(config).run()


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
