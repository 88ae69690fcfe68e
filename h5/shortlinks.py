"""``/c/<code>``: a campaign's short link (on SMS and posters) redirects (302) to the campaign's H5 page.

An unknown or mistyped code gets the H5 "page not found" page in Chinese (404), never problem+json. The
lookup lives in :mod:`core.campaigns.shortlinks`. A route at the site root (like ``GET /``), mounted by
:func:`h5.routes.short_link_router` with the H5 error pages.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import Provide
from litestar.response import Redirect

from core.campaigns import shortlinks
from core.db.types import DbSession
from h5.pages import page
from tenants.guards import provide_db

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@get("/c/{code:str}", dependencies={"db": Provide(provide_db)}, include_in_schema=False)
async def short_link(request: Request[Any, Any, Any], db: DbSession, code: str) -> Response[Any]:
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
    return Redirect(target.path, status_code=302, headers=_HEADERS)
