"""Wake-ups between processes through Postgres ``LISTEN``/``NOTIFY``.

A notice is a hint, never the data: whoever gets one reads the database, and polling stands
behind every notice, so a lost one costs a poll interval, not an event. Notices are sent inside
the transaction that made the change, so Postgres delivers them only once it is committed, and
one per batch (the journal writer's), not one per event: ``NOTIFY`` serializes commits.

Channels:

- ``QUEUED``: runs were queued for any worker to claim (payload empty);
- ``CHANGED``: runs got new events; the payload is the sending process, then one line per run,
  ``E<id>`` when its end was stored, ``C<id>`` otherwise;
- ``CANCEL``: a cancel of the run in the payload was requested.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

log = logging.getLogger("graphflow.service.notices")

QUEUED = "graphflow_queued"
CHANGED = "graphflow_changed"
CANCEL = "graphflow_cancel"
CHANNELS = (QUEUED, CHANGED, CANCEL)
# Postgres refuses payloads of 8000 bytes or more.
MAX_PAYLOAD = 7900

_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def send(conn: Connection, channel: str, payload: str = "") -> None:
    """Notify ``channel`` when ``conn``'s transaction commits."""
    conn.execute(_NOTIFY, {"channel": channel, "payload": payload})


def changed_payloads(origin: str, changed: Iterable[str], ended: Iterable[str]) -> list[str]:
    """``CHANGED`` payloads for these runs, each under ``MAX_PAYLOAD`` bytes."""
    lines = [f"E{run_id}" for run_id in ended]
    ended_set = set(ended)
    lines += [f"C{run_id}" for run_id in changed if run_id not in ended_set]
    payloads: list[str] = []
    current = [origin]
    size = len(origin.encode())
    for line in lines:
        if size + len(line.encode()) + 1 > MAX_PAYLOAD and len(current) > 1:
            payloads.append("\n".join(current))
            current, size = [origin], len(origin.encode())
        current.append(line)
        size += len(line.encode()) + 1
    if len(current) > 1:
        payloads.append("\n".join(current))
    return payloads


def parse_changed(payload: str) -> tuple[str, list[str], list[str]]:
    """(origin, changed runs, ended runs) of a ``CHANGED`` payload."""
    origin, *lines = payload.split("\n")
    changed = [line[1:] for line in lines if line[:1] == "C"]
    ended = [line[1:] for line in lines if line[:1] == "E"]
    return origin, changed, ended


class Listener:
    """One ``LISTEN`` connection in a daemon thread, calling ``on_notice(channel, payload)``.

    It reconnects after an error (logged) with a growing pause; ``on_reconnect`` is called after
    each reconnection, since notices sent meanwhile are lost: that is the moment to poll.
    """

    def __init__(
        self,
        database_url: str,
        on_notice: Callable[[str, str], None],
        *,
        on_reconnect: Callable[[], None] = lambda: None,
        channels: Iterable[str] = CHANNELS,
    ) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._on_notice = on_notice
        self._on_reconnect = on_reconnect
        self._channels = tuple(channels)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> bool:
        """Start listening; True once ``LISTEN`` is in place (within ``timeout``)."""
        self._thread = threading.Thread(target=self._run, name="graphflow-listen", daemon=True)
        self._thread.start()
        return self._listening.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        pause = 0.1
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    for channel in self._channels:
                        conn.execute(f"LISTEN {channel}")
                    self._listening.set()
                    if not first:
                        self._call(self._on_reconnect)
                    first, pause = False, 0.1
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            self._call(self._on_notice, notice.channel, notice.payload)
            except Exception:
                log.warning("the LISTEN connection failed; reconnecting", exc_info=True)
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)

    @staticmethod
    def _call(fn: Callable[..., None], *args: str) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("handling a database notice failed")
