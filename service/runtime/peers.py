"""The notices of other processes (``service.storage.notices``) as a runner acts on them.

Each notice is a hint to look: runs were queued for any worker, a client asked through another
process to cancel a run, runs got events in another process. Only Postgres carries notices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from service.runtime.claims import QueuedRunClaimer
from service.settings import Role, Settings
from service.storage import notices
from service.storage.engine import is_sqlite
from service.storage.notices import Listener

__all__ = ["PeerNotices"]

# The notices each role acts on: a worker has no streams, an api process executes nothing.
_CHANNELS = {
    Role.ALL: notices.CHANNELS,
    Role.API: (notices.CHANGED,),
    Role.WORKER: (notices.QUEUED, notices.CANCEL),
}


class PeerNotices:
    """Listens for the notices of other processes (on Postgres) and passes each on."""

    def __init__(
        self,
        settings: Settings,
        *,
        claimer: QueuedRunClaimer | None,
        wake_streams: Callable[[Iterable[str], Iterable[str], Mapping[str, list[Any]]], None],
        notify: Callable[[str], None],
        cancel_if_requested: Callable[[str], None],
    ) -> None:
        """``cancel_if_requested(run_id)``: a cancel of ``run_id`` was requested elsewhere."""
        self.settings = settings
        self.owner_id = settings.owner_id
        self._claimer = claimer
        self._wake_streams = wake_streams
        self.notify = notify
        self._cancel_if_requested = cancel_if_requested
        self._listener: Listener | None = None

    def start(self) -> None:
        """Start listening (nothing to listen to on SQLite)."""
        if not is_sqlite(self.settings.database_url):
            self._listener = Listener(
                self.settings.database_url,
                self._on_notice,
                on_reconnect=self._on_reconnect,
                channels=_CHANNELS[self.settings.role],
            )
            self._listener.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._listener is not None:
            self._listener.stop()

    def _on_reconnect(self) -> None:
        """Notices sent while the LISTEN connection was down are lost: look now."""
        if self._claimer is not None:
            self._claimer.queued()

    def _on_notice(self, channel: str, payload: str) -> None:
        """A notice from another process (``service.storage.notices``): a hint to look."""
        if channel == notices.QUEUED:
            if self._claimer is not None:
                self._claimer.queued()
        elif channel == notices.CANCEL:
            self._cancel_if_requested(payload)
        elif channel == notices.CHANGED:
            origin, changed, ended = notices.parse_changed(payload)
            if origin != self.owner_id:  # our own changes woke our streams already
                self._wake_streams(changed, (), {})
                for run_id in ended:
                    self.notify(run_id)  # streams and waiters read its end from the store
