"""Routes of the dashboard (``/ui``) and of the offline Swagger UI (``/docs``).

FastAPI's own ``/docs`` loads Swagger UI from a CDN; the app is created with
``docs_url=None, redoc_url=None`` and ``install`` serves the Swagger UI 5 files that the
``fastapi-offline`` package ships instead. (``swagger-ui-bundle`` ships Swagger UI 4, which cannot
read the OpenAPI 3.1 document FastAPI writes.) ReDoc is not served.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The package serves these files itself from this directory (it has no public name for it).
SWAGGER_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
UI_PATH = "/ui"
DOCS_PATH = "/docs"
DOCS_STATIC_PATH = "/docs/static"


def install(app: FastAPI) -> None:
    """Serve the dashboard under ``/ui/`` and Swagger UI at ``/docs`` (its assets local)."""
    # html=True answers /ui/ with index.html; the router redirects /ui to /ui/.
    app.mount(UI_PATH, StaticFiles(directory=STATIC_DIR, html=True), name="ui")
    app.mount(DOCS_STATIC_PATH, StaticFiles(directory=SWAGGER_DIR), name="docs-static")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, the URLs must carry it (as FastAPI's own /docs).
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC_PATH}/favicon.png",
            # Its default shows a badge image from validator.swagger.io: not offline.
            swagger_ui_parameters={"validatorUrl": None},
        )
