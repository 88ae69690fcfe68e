"""The page walk of issue 14's "Done means": every console page reachable by links, the operator console and
the member H5 pages, in zh-CN at 1280×800 and 390×844 and in English at 1280×800.

Each page must answer 200, must not scroll sideways, must show no untranslated English sentence in zh-CN and
no raw JSON. A failure names the page, the viewport, the locale and the offending element or text.
Screenshots of the main pages go to ``SCREENSHOTS/walk/<locale>-<width>-<page>.png``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from tenants.models import Plan, Tenant
from tests.conftest import unique
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WALKS = [("zh-CN", DESKTOP), ("zh-CN", PHONE), ("en", DESKTOP)]
MAX_PAGES = 90
PER_PATTERN = 2
SKIP = re.compile(
    r"/(logout|lang|login)\b|/download|/export|\.csv|\.xlsx|\.png|\.svg|/poster|/results|/report\.csv|/invite/"
)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHOP_NAME = "咖啡小馆"
ALLOWED_ENGLISH = (
    "kaquan",
    "API",
    "Webhook",
    "Asia/Shanghai",
    "UTC",
    "CNY",
    "SHA-256",
    "Test voucher",
    "JSON",
    "CSV",
    "XLSX",
    "HMAC",
    "Excel",
    "POS",
    "SMS",
    "URL",
    "QR",
    "UTF-8",
    "GBK",
    "OAuth",
    "English",
    "Crockford",
    # what the sandbox channel's demo data is called (core/channel_orders/demo.py, core/settlement/demo.py)
    "Sandbox shop",
    "Demo supplier",
    "Demo Store",
)

# Runs in the page: what sticks out to the right, English sentences shown in Chinese, raw JSON shown.
PROBE = r"""
(args) => {
  const [checkEnglish, allowed] = args;
  const vw = window.innerWidth;
  const out = {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: vw, wide: [], english: [], json: []};
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && parts.length < 5; e = e.parentElement) {
      let s = e.tagName.toLowerCase();
      if (e.id) { s += "#" + e.id; parts.unshift(s); break; }
      if (e.classList.length) s += "." + Array.from(e.classList).slice(0, 2).join(".");
      parts.unshift(s);
    }
    return parts.join(" > ");
  };
  const visible = (el) => {
    if (!el) return false;
    if (el.closest("[hidden], template, script, style, noscript, svg")) return false;
    if (el.checkVisibility && !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return false;
    return true;
  };
  if (out.scrollWidth > vw + 1) {
    const all = Array.from(document.body.querySelectorAll("*")).filter((e) => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.right > vw + 1 && visible(e) && !e.closest(".table-wrap, [data-scroll-x]");
    });
    // the innermost offenders: elements none of whose children stick out too
    const inner = all.filter((e) => !all.some((o) => o !== e && e.contains(o)));
    out.wide = inner.slice(0, 6).map((e) => ({
      el: path(e), right: Math.round(e.getBoundingClientRect().right),
      text: (e.innerText || e.value || "").trim().slice(0, 80),
    }));
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const sentence = /[A-Za-z]{2,}(?:[ \t\u00a0]+[A-Za-z]{2,})+/g;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.nodeValue.replace(/\s+/g, " ").trim();
    if (!text) continue;
    const el = n.parentElement;
    if (!visible(el)) continue;
    if ((text.startsWith('{"') || text.startsWith('[{"')) || (text.length > 20 && /^[\[{]/.test(text) && (() => {
      try { const v = JSON.parse(text); return typeof v === "object" && v !== null; } catch (e) { return false; }
    })())) {
      out.json.push({el: path(el), text: text.slice(0, 120)});
    }
    if (!checkEnglish || el.closest("code, kbd, pre, samp, [data-lang], [lang=en], .lang-switch, [data-raw]")) continue;
    let rest = text;
    for (const a of allowed) rest = rest.split(a).join(" ");
    rest = rest.replace(/\b(?:Tenant|Shop) [a-z][a-z0-9-]*/g, " ");  // tenants other tests' fixtures named
    rest = rest.replace(/\S+@\S+/g, " ").replace(/https?:\/\/\S+/g, " ").replace(/\/[\w\/.-]+/g, " ");
    const hits = rest.match(sentence);
    if (hits) out.english.push({el: path(el), text: text.slice(0, 120), words: hits.slice(0, 3)});
  }
  return out;
}
"""


@dataclass
class Shop:
    slug: str
    owner_email: str
    owner_password: str
    claim_path: str
    campaign_path: str
    tenant_id: uuid.UUID
    entered: list[str] = field(default_factory=list)
    """Data the test entered (names, SKUs…): allowed to be English on a Chinese page."""


@dataclass
class Finding:
    url: str
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where} {self.url}: {self.problem}"


def report(findings: list[Finding], pages: int) -> str:
    """One line per problem (the same menu text on every page is one problem), with the pages it is on."""
    by_problem: dict[str, list[Finding]] = {}
    for f in findings:
        by_problem.setdefault(f"{f.where} {f.problem}", []).append(f)
    lines = []
    for problem, hits in by_problem.items():
        urls = ", ".join(h.url for h in hits[:3]) + (f" (+{len(hits) - 3} more)" if len(hits) > 3 else "")
        lines.append(f"{problem}\n    on {urls}")
    return f"{len(by_problem)} problems on {pages} pages:\n" + "\n".join(lines)


def pattern_of(url: str) -> str:
    """The page a URL is an instance of: ids and numbers replaced, query keys kept (values dropped)."""
    parts = urlsplit(url)
    path = re.sub(r"/\d+(?=/|$)", "/<n>", UUID.sub("<id>", parts.path.rstrip("/") or "/"))
    keys = sorted({kv.split("=", 1)[0] for kv in parts.query.split("&") if kv})
    return path + ("?" + "&".join(keys) if keys else "")


def screenshot_name(url: str) -> str:
    """``/console/grants?status=…`` → ``grants-status``; the realm's start page → ``home``."""
    url = re.sub(r"^/(console|platform|h5)(?=/|$|\?)", "", url)
    name = re.sub(
        r"[^a-z0-9]+", "-", pattern_of(url).replace("<id>", "id").replace("<n>", "n").lower()
    ).strip("-")
    return name or "home"


@pytest.fixture(scope="module")
def shop(live_server: LiveServer, operator_account: OperatorAccount) -> Shop:
    """A tenant with some of everything: products with stock, grants, a claim link, a campaign, a member, a
    webhook, and (when the sandbox channel is installed) a channel shop's orders, statement and settlement."""
    from core.channel_orders.demo import seed_sandbox_sales
    from core.db.context import tenant_context
    from core.plugin_host import load_plugins
    from core.settlement.demo import seed_settlement
    from tenants.clients import create_client
    from tenants.scopes import SCOPES
    from tenants.users import accept_invite
    from tests.integration.inventory.stocking import stock_product

    kernel = live_server.app.state.kernel
    slug = unique("walk-")
    owner_email, owner_password = f"owner@{slug}.example.com", "owner-password-walk"
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        r = http.post(
            "/api/platform/v1/login",
            json={"email": operator_account.email, "password": operator_account.password},
        )
        r.raise_for_status()
        op = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = http.post(
            "/api/platform/v1/tenants",
            headers=op,
            json={"name": SHOP_NAME, "slug": slug, "owner_email": owner_email, "plan": "growth"},
        )
        r.raise_for_status()
        tenant_id = uuid.UUID(r.json()["tenant"]["id"])
        token = r.json()["owner_invite_url"].rsplit("/", 1)[1]

        async def setup() -> tuple[str, str]:
            with tenant_context(tenant_id):
                async with kernel.db.transaction() as db:
                    await accept_invite(db, token, owner_password)
                async with kernel.db.transaction() as db:
                    row, secret = await create_client(db, unique("walk-client-"), sorted(SCOPES))
                    return row.client_id, secret

        client_id, secret = live_server.run(setup())
        r = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        r.raise_for_status()
        api = {"Authorization": f"Bearer {r.json()['access_token']}"}

        def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            r = http.post(path, headers={**api, "Idempotency-Key": secrets.token_hex(8)}, json=body)
            assert r.status_code in (200, 201), f"{path}: {r.status_code} {r.text}"
            return dict(r.json())

        stocked = live_server.run(
            stock_product(kernel, tenant_id, 6, usage_rules="到店出示二维码兑换一杯拿铁")
        )
        live_server.run(stock_product(kernel, tenant_id, 3, with_pin=False, brand="小馆烘焙"))
        product = str(stocked.product_id)
        member = post("/api/v1/members", {"phone": "13912345678", "name": "张三", "tags": ["会员日"]})
        grant = post("/api/v1/grants", {"product_id": product, "member_id": member["id"], "channel": "none"})
        post("/api/v1/grants", {"product_id": product, "external_id": unique("m-"), "channel": "none"})
        claim = post(f"/api/v1/grants/{grant['id']}/claim-link")
        campaign = post("/api/v1/campaigns", {"name": "周末拿铁", "product_id": product})
        post(
            "/api/v1/webhooks",
            {"url": "https://hooks.example.com/kaquan", "events": ["*"], "description": "门店系统"},
        )

    async def channel_data() -> None:
        plugins = load_plugins(kernel.settings.disabled_plugin_names)
        sales = await seed_sandbox_sales(kernel, plugins, tenant_id)
        if sales and sales.fulfilled:
            await seed_settlement(kernel, plugins, tenant_id, sales.account_id)

    live_server.run(channel_data(), timeout=120)
    return Shop(
        slug,
        owner_email,
        owner_password,
        claim["path"],
        campaign["path"],
        tenant_id,
        entered=[SHOP_NAME, "Test voucher", slug, owner_email],
    )


@pytest.fixture
def context_for(chromium: Any, live_server: LiveServer) -> Iterator[Any]:
    opened: list[Any] = []

    def make(locale: str, viewport: dict[str, int]) -> Any:
        phone = viewport["width"] < 600
        context = chromium.new_context(
            base_url=live_server.url, viewport=viewport, locale=locale, is_mobile=phone, has_touch=phone
        )
        context.set_default_timeout(20_000)
        context.add_cookies([{"name": "lang", "value": locale, "url": live_server.url}])
        opened.append(context)
        return context

    yield make
    for context in opened:
        context.close()


def check_page(
    page: Any, url: str, where: str, locale: str, allowed: list[str], status: int | None
) -> list[Finding]:
    found: list[Finding] = []
    if status is not None and status != 200:
        found.append(Finding(url, where, f"HTTP {status}"))
    result = page.evaluate(PROBE, [locale == "zh-CN", [*ALLOWED_ENGLISH, *allowed]])
    if result["scrollWidth"] > result["innerWidth"] + 1:
        offenders = "; ".join(f"<{w['el']}> right={w['right']} {w['text']!r}" for w in result["wide"]) or "?"
        found.append(
            Finding(
                url,
                where,
                f"scrolls sideways ({result['scrollWidth']}px > {result['innerWidth']}px): {offenders}",
            )
        )
    for hit in result["english"][:5]:
        found.append(Finding(url, where, f"English in zh-CN <{hit['el']}>: {hit['text']!r} ({hit['words']})"))
    for hit in result["json"][:3]:
        found.append(Finding(url, where, f"raw JSON <{hit['el']}>: {hit['text']!r}"))
    return found


def walk(
    page: Any,
    start: list[str],
    prefix: str,
    where: str,
    locale: str,
    allowed: list[str],
    shots: str | None = None,
) -> tuple[list[Finding], list[str]]:
    """Breadth-first over same-origin GET links under ``prefix``, one or two pages per URL pattern."""
    queue, seen, patterns, visited, findings = list(start), set(start), {}, [], []
    main = set(start)
    while queue and len(visited) < MAX_PAGES:
        url = queue.pop(0)
        response = page.goto(url, wait_until="domcontentloaded")
        visited.append(url)
        findings += check_page(page, url, where, locale, allowed, response.status if response else None)
        if shots and (url in main or url.count("/") <= 2):
            page.screenshot(path=str(SCREENSHOTS / "walk" / f"{shots}-{screenshot_name(url)}.png"))
        hrefs = page.eval_on_selector_all(
            "a[href]", "els => els.filter(a => !a.hasAttribute('download')).map(a => a.getAttribute('href'))"
        )
        for href in hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or not parts.path.startswith(prefix) or SKIP.search(href):
                continue
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            key = pattern_of(target)
            if target in seen or patterns.get(key, 0) >= PER_PATTERN:
                continue
            if url in start and href in page.eval_on_selector_all(
                "[data-nav]", "els => els.map(a => a.getAttribute('href'))"
            ):
                main.add(target)
            seen.add(target)
            patterns[key] = patterns.get(key, 0) + 1
            queue.append(target)
    return findings, visited


def console_login(page: Any, shop: Shop) -> None:
    page.goto("/console/login")
    page.fill("#f-tenant", shop.slug)
    page.fill("#f-email", shop.owner_email)
    page.fill("#f-password", shop.owner_password)
    page.click("form.form button[type=submit]")
    page.wait_for_url(re.compile(r"/console/?$"))


@pytest.mark.parametrize(("locale", "viewport"), WALKS, ids=[f"{loc}-{v['width']}" for loc, v in WALKS])
def test_every_console_page_fits_and_speaks_the_language(
    context_for: Any, shop: Shop, locale: str, viewport: dict[str, int]
) -> None:
    (SCREENSHOTS / "walk").mkdir(parents=True, exist_ok=True)
    page = context_for(locale, viewport).new_page()
    page.on("dialog", lambda dialog: dialog.dismiss())
    console_login(page, shop)
    where = f"[{locale} {viewport['width']}x{viewport['height']}]"
    nav = page.eval_on_selector_all("[data-nav]", "els => els.map(a => a.getAttribute('href'))")
    assert len(nav) >= 20, f"{where} the owner's menu has {len(nav)} links: {nav}"
    findings, visited = walk(
        page,
        ["/console", *nav],
        "/console",
        where,
        locale,
        shop.entered,
        shots=f"{locale}-{viewport['width']}",
    )
    # mistyped URLs: the console's own 404 page, which fits and speaks the language too
    for url in ("/console/nonexistent", f"/console/grants/{uuid.uuid4()}"):
        response = page.goto(url)
        assert response and response.status == 404, (
            f"{where} {url}: HTTP {response.status if response else '?'}"
        )
        findings += check_page(page, url, where, locale, shop.entered, None)
    assert len(visited) >= 30, f"{where} only {len(visited)} pages were reached: {visited}"
    assert not findings, report(findings, len(visited))


def platform_names(live_server: LiveServer) -> list[str]:
    """What operators named plans and tenants (other tests' fixtures share the database): data, not words."""

    async def names() -> list[str]:
        async with live_server.app.state.kernel.db.transaction() as db:
            plans = (await db.execute(select(Plan.code, Plan.name))).all()
            tenants = (await db.execute(select(Tenant.slug, Tenant.name))).all()
        return [str(v) for row in (*plans, *tenants) for v in row if v]

    return live_server.run(names())


@pytest.mark.parametrize(("locale", "viewport"), WALKS, ids=[f"{loc}-{v['width']}" for loc, v in WALKS])
def test_operator_console_pages_fit_and_speak_the_language(
    context_for: Any,
    live_server: LiveServer,
    operator_account: OperatorAccount,
    shop: Shop,
    locale: str,
    viewport: dict[str, int],
) -> None:
    (SCREENSHOTS / "walk").mkdir(parents=True, exist_ok=True)
    page = context_for(locale, viewport).new_page()
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto("/platform/login")
    page.fill("#f-email", operator_account.email)
    page.fill("#f-password", operator_account.password)
    page.click("form.form button[type=submit]")
    page.wait_for_url(re.compile(r"/platform/tenants"))
    where = f"[{locale} {viewport['width']}x{viewport['height']} operator]"
    findings, visited = walk(
        page,
        ["/platform/tenants", "/platform/plans", "/platform/plugins", "/platform/tenants/new"],
        "/platform",
        where,
        locale,
        [*shop.entered, *platform_names(live_server)],
        shots=f"{locale}-{viewport['width']}-platform",
    )
    response = page.goto("/platform/xyz")
    assert response and response.status == 404, (
        f"{where} /platform/xyz: HTTP {response.status if response else '?'}"
    )
    findings += check_page(page, "/platform/xyz", where, locale, shop.entered, None)
    assert len(visited) >= 4, visited
    assert not findings, report(findings, len(visited))


@pytest.mark.parametrize(("locale", "viewport"), WALKS, ids=[f"{loc}-{v['width']}" for loc, v in WALKS])
def test_member_pages_fit_and_speak_the_language(
    context_for: Any, shop: Shop, locale: str, viewport: dict[str, int]
) -> None:
    """The claim link, the campaign page and 我的券 (without a session: what a customer sees first)."""
    (SCREENSHOTS / "walk").mkdir(parents=True, exist_ok=True)
    page = context_for(locale, viewport).new_page()
    where = f"[{locale} {viewport['width']}x{viewport['height']} H5]"
    findings: list[Finding] = []
    # 我的券 without a session: the shop is remembered from the claim page, so it offers sign-in by phone
    for name, url, ok in (
        ("claim", shop.claim_path, {200}),
        ("campaign", shop.campaign_path, {200}),
        ("me", "/h5/me", {200}),
    ):
        response = page.goto(url)
        status = response.status if response else None
        findings += check_page(page, url, where, locale, shop.entered, 200 if status in ok else status)
        page.screenshot(
            path=str(SCREENSHOTS / "walk" / f"{locale}-{viewport['width']}-h5-{name}.png"), full_page=True
        )
    assert not findings, report(findings, 3)
