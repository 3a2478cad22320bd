"""`/realtime/v1/websocket`: Supabase Realtime subset (being written)."""

from __future__ import annotations

from aiohttp import web

from opstui.backend.gateway import GatewayContext


def setup(app: web.Application, ctx: GatewayContext) -> None:
    pass


def install_change_capture(conn) -> None:
    pass
