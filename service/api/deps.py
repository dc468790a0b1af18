"""FastAPI dependencies: the app-wide objects created in the lifespan.

They are ``async`` because they only read ``app.state``: FastAPI runs a plain ``def``
dependency in the thread pool, a round trip per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.capacity import StreamSlots
from service.api.catalog import Catalog
from service.runtime.runner import RunManager
from service.runtime.streams import Notifier
from service.settings import Settings
from service.storage.base import RunStore
from service.storage.retention import RunRetention


async def get_store(request: Request) -> RunStore:
    store: RunStore = request.app.state.store
    return store


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_runner(request: Request) -> RunManager:
    runner: RunManager = request.app.state.runner
    return runner


async def get_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


async def get_stream_slots(request: Request) -> StreamSlots:
    slots: StreamSlots = request.app.state.stream_slots
    return slots


async def get_retention(request: Request) -> RunRetention:
    """Deletes the finished runs of the app's store (a few attributes: one per request)."""
    return RunRetention(request.app.state.store)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[RunStore, Depends(get_store)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
RunnerDep = Annotated[RunManager, Depends(get_runner)]
NotifierDep = Annotated[Notifier, Depends(get_notifier)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StreamSlotsDep = Annotated[StreamSlots, Depends(get_stream_slots)]
RetentionDep = Annotated[RunRetention, Depends(get_retention)]
