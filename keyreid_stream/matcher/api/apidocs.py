"""The query API's documentation pages, served without internet: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc).

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on an isolated site they stay blank. Here the pages
are FastAPI's (``get_swagger_ui_html`` / ``get_redoc_html``), and their scripts, style sheet and icon are the files
that the pinned ``fastapi-offline`` package ships (Swagger UI 5, which reads OpenAPI 3.1, and ReDoc), served by
the API itself under :data:`ASSETS_URL`; ReDoc without Google's fonts. No OAuth2 redirect page: the API's only
credential is a bearer token typed into Swagger UI's *Authorize* dialog. Like ``/openapi.json``, these routes
need no token (they hold no data).
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

import fastapi
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "DOCS_URL", "REDOC_URL", "add_api_docs", "assets_dir"]

logger = logging.getLogger(__name__)

DOCS_URL, REDOC_URL, ASSETS_URL = "/docs", "/redoc", "/docs/assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path | None:
    """The folder of the documentation pages' files (from ``fastapi-offline``), or None when missing."""
    try:
        folder = Path(str(importlib.resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in ASSET_FILES) else None


def add_api_docs(app: fastapi.FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` from local files (create the app with ``docs_url=None, redoc_url=None``)."""
    folder = assets_dir()
    if folder is None:
        logger.warning("query API: fastapi-offline's files are missing (pip install fastapi-offline); /docs and "
                       "/redoc are not served, /openapi.json is")
        return
    app.mount(ASSETS_URL, StaticFiles(directory=folder), name="api-docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: fastapi.Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - API", oauth2_redirect_url=None,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png", swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: fastapi.Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + openapi_url, title=f"{app.title} - API reference",
                              redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)
