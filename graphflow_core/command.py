"""What a node returns to route the run: ``Command`` and the map fan-out entry ``Send``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidNodeResultError

__all__ = ["Command", "Send"]


@dataclass(frozen=True, slots=True)
class Send:
    """Run ``node`` once with ``payload`` as its whole state (one item of a map fan-out)."""

    node: str
    payload: Any = None


Target = str | Send


@dataclass(frozen=True, slots=True)
class Command:
    """A node's result that updates the state and routes the run.

    ``goto`` is a node name, a ``Send``, or a list of them; the targets run in addition to the
    node's static edges, and their order fixes the order in which their updates merge.
    """

    update: Mapping[str, Any] | None = None
    goto: Target | Sequence[Target] = field(default=())


def normalize_result(node: str, result: object) -> tuple[dict[str, Any] | None, tuple[Target, ...]]:
    """Split a node's return value into its update and its dynamic routes.

    Raises:
        InvalidNodeResultError: the value is not a dict, None or Command, or a part of it is of
            the wrong type.
    """
    if result is None:
        return None, ()
    if type(result) is dict:
        return result, ()
    if isinstance(result, Command):
        update = result.update
        if update is not None and not isinstance(update, Mapping):
            raise InvalidNodeResultError(
                node, update, f"returned Command(update=<{type(update).__name__}>); use a dict"
            )
        goto = result.goto
        if isinstance(goto, str | Send):
            targets: tuple[Target, ...] = (goto,)
        elif isinstance(goto, Sequence):
            targets = tuple(goto)
            for target in targets:
                if not isinstance(target, str | Send):
                    raise InvalidNodeResultError(
                        node,
                        target,
                        f"returned a goto entry of type {type(target).__name__}; "
                        "use a node name or Send(node, payload)",
                    )
        else:
            raise InvalidNodeResultError(
                node, goto, f"returned Command(goto=<{type(goto).__name__}>); use a name or list"
            )
        return (dict(update) if update is not None else None), targets
    if isinstance(result, Mapping):
        return dict(result), ()
    raise InvalidNodeResultError(node, result)
