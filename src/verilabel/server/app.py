"""The application: ``create_app(settings, store)`` builds it, with its state on ``app.state`` (no globals)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from verilabel import __version__
from verilabel.server import errors
from verilabel.server.api import catalogue, datasets, media, review, runs, session, users
from verilabel.server.auth import open_session, require, user_for_token
from verilabel.server.settings import ServerSettings
from verilabel.settings import Settings
from verilabel.store import Store

API = "/api/v1"
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def assets_digest(folder: Path = STATIC) -> str:
    """A hash of the app's files: their URLs carry it, so browsers may cache them for good."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def create_app(settings: ServerSettings, store: Store, home: Path | None = None) -> FastAPI:
    home = home or Settings.from_env().home
    app = FastAPI(
        title="verilabel",
        version=__version__,
        description="Verified auto-labeling: datasets, runs, review and approval.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings, app.state.store = settings, store
    app.state.cache, app.state.masks = home / "thumbnails", home / "masks"
    app.state.launch_sessions = {}
    errors.install(app)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        # A loopback server answers only for loopback names: a page on another site that resolves its own name to
        # 127.0.0.1 (DNS rebinding) gets nothing.
        if not settings.answers_host(request.headers.get("host", "")):
            return JSONResponse(errors.error_body("HTTPError", "unknown Host header"), 400)
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    viewer = [Depends(require("viewer"))]  # every API route is closed unless a router is deliberately public
    app.include_router(session.public, prefix=API)
    for module in (session, datasets, runs, review, media, catalogue, users):
        app.include_router(module.router, prefix=API, dependencies=viewer)

    digest = assets_digest()
    app.mount(f"/assets/{digest}", StaticFiles(directory=STATIC), name="assets")
    index = (STATIC / "index.html").read_text().replace("{{ASSETS}}", f"/assets/{digest}")

    @app.get("/", include_in_schema=False)
    def home_page(request: Request, token: str | None = None) -> Response:
        """The app. With ``?token=``: sign in, then come back without the token in the address bar."""
        if token is not None:
            user = user_for_token(request, token)
            if user is None:
                return HTMLResponse(index, status_code=401, headers={"Cache-Control": "no-store"})
            response = RedirectResponse("/", status_code=303)
            open_session(request, response, user)
            return response
        return HTMLResponse(index, headers={"Cache-Control": "no-store"})

    return app
