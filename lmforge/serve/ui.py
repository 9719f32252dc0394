"""The web UI at ``/``: chat (streamed token by token), classification, NER and
translation over this server's own API, in English or Chinese.

Plain HTML, CSS and JavaScript shipped inside the package (``static/``, served under
``/ui/``): no build step, and nothing loaded from another origin, so the page works
offline and its Content-Security-Policy can allow this server alone. The page is public
(:mod:`lmforge.serve.access`); its API calls carry the key the user types in it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

HEADERS = {
    # this origin only: no CDN, no inline script or style. app.js inserts model output as
    # text; the policy would also stop a script that slipped into the page.
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; "
                              "connect-src 'self'; img-src 'self' data:",
    # revalidate on every load: an upgraded server's page never runs with a cached app.js
    "Cache-Control": "no-cache",
}


class _Static(StaticFiles):
    """The UI's files, with :data:`HEADERS`."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Serve the UI on ``app``: the page at ``/``, its files under ``/ui/`` (neither is
    in the OpenAPI schema)."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=HEADERS)

    app.mount("/ui", _Static(directory=STATIC), name="ui")
