"""What a process tells the outside about its work: metrics, traces and logs.

``observers_for`` gives the ``RunObserver``s that the settings ask for; the app and the worker
hand them to their ``RunManager``.
"""

from __future__ import annotations

from service.runtime.observers import RunObserver
from service.settings import Settings


def observers_for(settings: Settings) -> list[RunObserver]:
    """The observers of runs this process should have."""
    observers: list[RunObserver] = []
    return observers
