"""The one parse of a JSON request body, with the checks FastAPI does not make.

``json.loads`` raises ``RecursionError`` somewhere near 1,000 levels, which FastAPI turns into a
vague 400; bodies just under that still reach pydantic, the database and the engine. Python also
accepts ``NaN``, ``Infinity``, ``1e400`` and lone UTF-16 surrogates, none of which can be stored
(Postgres refuses them) or sent back as JSON. ``StrictRoute`` refuses such bodies with a clear
400, and hands the parsed document on to FastAPI so the body is parsed once.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from service.errors import BodyTooDeepError, InvalidJsonError

__all__ = ["NOT_JSON", "parse_json_body"]

NOT_JSON: Final = object()
"""Returned by ``parse_json_body`` for a body that is not JSON (FastAPI reports those: 422)."""

# A \uD800-\uDFFF escape. Raw UTF-8 cannot carry a surrogate (decoding refuses it), so a body
# without such an escape holds no lone surrogate and its strings need no check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _walk(document: Any, limit: int, *, check_strings: bool) -> bool:
    """True when ``document`` nests lists/dicts more than ``limit`` levels (``[]`` is depth 1).

    Iterative, so it cannot itself hit the recursion limit. With ``check_strings``, raises
    ``UnicodeEncodeError`` on a lone surrogate in any key or string value.
    """
    if not isinstance(document, dict | list):
        if check_strings and isinstance(document, str):
            document.encode("utf-8")
        return False
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            if check_strings:
                for key in value:
                    key.encode("utf-8")
            children = value.values()
        else:
            children = value
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif check_strings and isinstance(child, str):
                child.encode("utf-8")
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


def parse_json_body(body: bytes, max_depth: int) -> Any:
    """Parse ``body`` once and return the document, or ``NOT_JSON`` when it is not JSON.

    Raises ``BodyTooDeepError`` for JSON nested deeper than ``max_depth`` and
    ``InvalidJsonError`` for non-finite numbers or lone surrogates.
    """
    try:
        document = json.loads(body, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BodyTooDeepError(max_depth) from exc
    except _NonFiniteNumber as exc:
        raise InvalidJsonError(
            f"request body contains the number {exc}, which cannot be stored as JSON"
        ) from exc
    except ValueError:  # JSONDecodeError and UnicodeDecodeError: FastAPI reports those
        return NOT_JSON
    try:
        too_deep = _walk(
            document, max_depth, check_strings=_SURROGATE_ESCAPE.search(body) is not None
        )
    except UnicodeEncodeError as exc:
        raise InvalidJsonError(
            "request body contains a lone UTF-16 surrogate escape, which is not valid Unicode"
        ) from exc
    if too_deep:
        raise BodyTooDeepError(max_depth)
    return document
