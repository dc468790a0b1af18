"""Checks of JSON request bodies that FastAPI does not make, run before it validates them.

``json.loads`` raises ``RecursionError`` somewhere near 1,000 levels, which FastAPI turns into a
vague 400; bodies just under that still reach pydantic, the database and the engine. Python also
accepts ``NaN``, ``Infinity``, ``1e400`` and lone UTF-16 surrogates, none of which can be stored
(Postgres refuses them) or sent back as JSON. ``StrictRoute`` refuses such bodies with a clear
400.
"""

from __future__ import annotations

import json
import math
from typing import Any

from service.errors import BodyTooDeepError, InvalidJsonError


def json_depth_exceeds(document: Any, limit: int) -> bool:
    """True when ``document`` nests lists/dicts more than ``limit`` levels (``[]`` is depth 1).

    Iterative, so it cannot itself hit the recursion limit.
    """
    if not isinstance(document, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class _NonFiniteNumber(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumber(text)
    return value


def _reject_constant(text: str) -> Any:
    raise _NonFiniteNumber(text)


def check_json_body(body: bytes, max_depth: int) -> None:
    """Raise ``BodyTooDeepError`` for JSON nested deeper than ``max_depth`` and
    ``InvalidJsonError`` for non-finite numbers or lone surrogates.

    Bodies that are not JSON at all are left for FastAPI to reject with its usual 422.
    """
    if not body:
        return
    try:
        document = json.loads(body, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BodyTooDeepError(max_depth) from exc
    except _NonFiniteNumber as exc:
        raise InvalidJsonError(
            f"request body contains the number {exc}, which cannot be stored as JSON"
        ) from exc
    except ValueError:  # JSONDecodeError and UnicodeDecodeError: FastAPI reports those
        return
    if json_depth_exceeds(document, max_depth):
        raise BodyTooDeepError(max_depth)
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJsonError(
            "request body contains a lone UTF-16 surrogate escape, which is not valid Unicode"
        ) from exc
