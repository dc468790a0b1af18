"""Named reducers: how an update to a state key combines with the value already there."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import GraphValidationError

__all__ = ["REDUCERS", "Reducer"]

Reducer = Callable[[Any, Any], Any]


def extend(current: Any, update: Any) -> list[Any]:
    """List concatenation; a missing current value counts as an empty list."""
    if current is None:
        return list(update)
    return [*current, *update]


def merge(current: Any, update: Any) -> dict[Any, Any]:
    """Dict merge; keys of the update win."""
    if current is None:
        return dict(update)
    return {**current, **update}


def set_value(current: Any, update: Any) -> Any:
    """Last write wins."""
    return update


REDUCERS: dict[str, Reducer] = {"extend": extend, "merge": merge, "set": set_value}
# In-place forms of the named reducers, for values a StateBuilder created itself.
_IN_PLACE: dict[Reducer, Callable[[Any, Any], None]] = {extend: list.extend, merge: dict.update}


def resolve_reducers(spec: Mapping[str, str | Reducer] | None) -> dict[str, Reducer]:
    """Map each state key to its reducer function.

    Raises:
        GraphValidationError: a reducer is named that does not exist, or is not callable.
    """
    resolved: dict[str, Reducer] = {}
    for key, reducer in (spec or {}).items():
        if isinstance(reducer, str):
            if reducer not in REDUCERS:
                raise GraphValidationError(
                    f"state key {key!r} names reducer {reducer!r}; "
                    f"use one of {', '.join(sorted(REDUCERS))} or a callable (current, update)"
                )
            resolved[key] = REDUCERS[reducer]
        elif callable(reducer):
            resolved[key] = reducer
        else:
            raise GraphValidationError(
                f"state key {key!r} has reducer of type {type(reducer).__name__}; "
                "use a reducer name or a callable (current, update) -> new"
            )
    return resolved


def reducer_name(reducer: Reducer) -> str:
    """The name under which a reducer is shown: its registered name, else its __name__."""
    for name, known in REDUCERS.items():
        if known is reducer:
            return name
    return getattr(reducer, "__name__", type(reducer).__name__)


class StateBuilder:
    """Applies updates onto a copy of a state without mutating values it does not own.

    Lists and dicts built by the named reducers during this build are owned, so further
    ``extend``/``merge`` updates to the same key append in place instead of copying again: a
    join over N branches costs O(N), not O(N^2).
    """

    __slots__ = ("_owned", "_reducers", "state")

    def __init__(self, base: Mapping[str, Any], reducers: Mapping[str, Reducer]) -> None:
        self.state: dict[str, Any] = dict(base)
        self._reducers = reducers
        self._owned: set[str] = set()

    def apply(self, update: Mapping[str, Any] | None) -> None:
        if not update:
            return
        state = self.state
        reducers = self._reducers
        for key, value in update.items():
            reducer = reducers.get(key)
            if reducer is None or reducer is set_value:
                state[key] = value
                self._owned.discard(key)
            elif (grow := _IN_PLACE.get(reducer)) is not None:
                if key in self._owned:
                    grow(state[key], value)
                else:
                    state[key] = reducer(state.get(key), value)
                    self._owned.add(key)
            else:
                state[key] = reducer(state.get(key), value)
