"""``StrictRoute``: the request checks every API route makes before FastAPI's own parsing.

It refuses query parameters the route does not declare, by name or by prefix
(``QUERY_PREFIXES``; a typo such as ``?limt=5`` would otherwise be ignored silently), and JSON
bodies that ``service.api.json_body`` rejects.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from service.api.json_body import NOT_JSON, parse_json_body
from service.api.schemas import ErrorPublic
from service.errors import UnknownQueryParameterError

# Declared on every router using ``StrictRoute``, so the OpenAPI document lists the 400.
STRICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorPublic,
        "description": "Unknown query parameter, unusable JSON body, or a bad cursor",
    },
    503: {
        "model": ErrorPublic,
        "headers": {"Retry-After": {"description": "Seconds to wait before retrying."}},
        "description": "The database is unavailable (or, for streams, too many are open)",
    },
}


def declared_query_parameters(dependant: Dependant) -> frozenset[str]:
    """The query parameter names of a route, its dependencies' included."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= declared_query_parameters(sub)
    return frozenset(names)


QUERY_PREFIXES = "x-query-parameter-prefixes"
"""The key, in a route's ``openapi_extra``, of the prefixes of the query parameter names it
takes besides those it declares (``["metadata."]`` for ``?metadata.<key>=``); the OpenAPI
document shows them too."""


def check_query_parameters(
    present: list[str], allowed: frozenset[str], prefixes: tuple[str, ...] = ()
) -> None:
    """Raise ``UnknownQueryParameterError`` when ``present`` holds a name not in ``allowed``
    that starts with none of ``prefixes``."""
    unknown = sorted(name for name in set(present) - allowed if not name.startswith(prefixes))
    if unknown:
        takes = sorted(allowed) + [f"{prefix}<key>" for prefix in prefixes]
        raise UnknownQueryParameterError(unknown, takes)


class StrictRoute(APIRoute):
    """An ``APIRoute`` that checks query parameter names and the JSON body before parsing."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = declared_query_parameters(self.dependant)
        prefixes = tuple((self.openapi_extra or {}).get(QUERY_PREFIXES, ()))
        takes_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            check_query_parameters(list(request.query_params.keys()), allowed, prefixes)
            if takes_body:
                try:
                    body = await request.body()
                except ClientDisconnect:
                    return Response(status_code=400)  # the client is gone
                if body:
                    document = parse_json_body(body, request.app.state.settings.max_json_depth)
                    if document is not NOT_JSON:
                        request._json = document  # FastAPI's ``await request.json()`` reuses it
            return await handler(request)

        return checked
