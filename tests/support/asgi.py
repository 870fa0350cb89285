"""The dashboard's Starlette app in this process, over httpx's ASGI transport.

Starlette's TestClient warns (an error under ``filterwarnings=error``) unless the
``httpx2`` package is installed; this does the same with httpx alone: an AsyncClient
driven from a blocking anyio portal, so tests call ``get``/``post`` synchronously.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import anyio.from_thread
import httpx


class SyncClient:
    def __init__(self, portal: Any, client: httpx.AsyncClient) -> None:
        self._portal = portal
        self.client = client

    @property
    def cookies(self) -> httpx.Cookies:
        return self.client.cookies

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(partial(self.client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@contextmanager
def asgi_client(
    app: Any, base_url: str = "http://dashboard.test", *, raise_app_exceptions: bool = True
) -> Iterator[SyncClient]:
    """A client of *app*; *base_url*'s scheme is the request's (https: a TLS request).
    raise_app_exceptions=False: get the app's 500 response instead of its exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    with anyio.from_thread.start_blocking_portal() as portal:
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        try:
            yield SyncClient(portal, client)
        finally:
            portal.call(client.aclose)
