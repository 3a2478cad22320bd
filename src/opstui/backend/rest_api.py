"""`/rest/v1`: PostgREST subset (being written)."""

from __future__ import annotations

from aiohttp import web

from opstui.backend.gateway import GatewayContext


def setup(app: web.Application, ctx: GatewayContext) -> None:
    pass
