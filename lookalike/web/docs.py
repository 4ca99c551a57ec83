"""/redoc: ReDoc from the script fastapi-offline ships, asking no other host.

ReDoc's bundle shows its vendor's logo (an image on cdn.redoc.ly) under the menu; the page's content policy allows
images from this server only, so the browser never asks for it and the page works offline as it says.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

OFFLINE_STATIC = "/static-offline-docs"  # where fastapi-offline serves its files
CONTENT_POLICY = "img-src 'self' data: blob:"


def add_redoc(app: FastAPI, path: str = "/redoc") -> None:
    @app.get(path, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{OFFLINE_STATIC}/redoc.standalone.js", with_google_fonts=False,
                              redoc_favicon_url=f"{OFFLINE_STATIC}/favicon.png")
        return HTMLResponse(page.body, headers={"Content-Security-Policy": CONTENT_POLICY})
