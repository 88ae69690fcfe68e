"""Console "店铺展示与短信" (/console/settings/branding): the shop name, logo and SMS texts an owner edits
itself, with readable errors for a bad placeholder, a wrong image type or an oversized logo."""

from __future__ import annotations

from typing import Any

from tests.integration.console.conftest import csrf_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
URL = "/console/settings/branding"


async def test_owner_edits_name_sms_texts_and_logo(browser: Any, make_tenant: Any, make_user: Any) -> None:
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    await browser.console_login(tenant.slug, owner.email, owner.password)
    page = await browser.get(URL)
    assert page.status_code == 200 and "店铺展示与短信" in page.text and "验证码短信" in page.text
    assert "{code}" in page.text and "预览" in page.text

    r = await browser.submit(URL, URL, {"display_name": "小咖啡", "sms_signature": "小咖啡",
                                        "template_claim_otp": "验证码 {pin}"})
    assert r.status_code == 422 and "未知的占位符 {pin}" in r.text and 'value="小咖啡"' in r.text
    r = await browser.submit(URL, URL, {"display_name": "小咖啡", "sms_signature": "小咖啡",
                                        "template_claim_otp": "验证码 {code}"})
    assert r.status_code == 303
    page = await browser.get(URL)
    assert "【小咖啡】验证码 123456" in page.text

    async def upload(data: bytes, name: str, kind: str) -> Any:
        token = csrf_of((await browser.get(URL)).text)
        return await browser.http.post(
            f"{URL}/logo", data={"_csrf_token": token}, files={"logo": (name, data, kind)}
        )

    r = await upload(b"GIF89a" + b"\x00" * 16, "logo.gif", "image/gif")
    assert r.status_code == 422 and "仅支持 PNG、JPEG 或 WebP" in r.text
    r = await upload(PNG + b"\x00" * 210_000, "big.png", "image/png")
    assert r.status_code in (413, 422)
    r = await upload(PNG, "logo.png", "image/png")
    assert r.status_code == 303
    page = await browser.get(URL)
    assert "data-logo" in page.text and f"/h5/logo/{tenant.slug}/" in page.text


async def test_a_viewer_cannot_open_the_settings(browser: Any, make_tenant: Any, make_user: Any) -> None:
    tenant = await make_tenant()
    viewer = await make_user(tenant, "viewer")
    await browser.console_login(tenant.slug, viewer.email, viewer.password)
    r = await browser.get(URL)
    assert r.status_code in (302, 303, 403)
