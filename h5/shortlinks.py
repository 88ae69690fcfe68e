"""``/c/<code>``: a campaign's short link (on SMS and posters) redirects (302) to the campaign's H5 page.

An unknown or mistyped code gets the H5 "page not found" page in Chinese (404), never problem+json. The
lookup lives in :mod:`core.campaigns.shortlinks`.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import Provide
from litestar.response import Redirect

from core.campaigns import shortlinks
from core.db.types import DbSession
from h5.pages import page
from tenants.guards import provide_db


class ShortLinkController(Controller):
    path = "/c"
    dependencies = {"db": Provide(provide_db)}
    include_in_schema = False

    @get("/{code:str}")
    async def short_link(self, request: Request[Any, Any, Any], db: DbSession, code: str) -> Response[Any]:
        target = await shortlinks.resolve(db, request.app.state.kernel, code)
        if target is None:
            return page(
                request,
                "h5/message.html",
                {
                    "title": "活动不存在",
                    "message": "这个活动链接不存在或已失效，请检查链接是否输入完整，或联系商家获取新的链接。",
                    "status": 404,
                },
                status=404,
            )
        return Redirect(
            target.path,
            status_code=302,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
