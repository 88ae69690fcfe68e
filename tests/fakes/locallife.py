"""The fake local-life platform of docs/connectors/locallife.md: SPI calls out, verification both ways."""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes._server import (
    FakeChannelServer,
    Reply,
    SignedCall,
    dumps,
    hmac_hex,
    json_reply,
    parse_json,
)

#: The platform calls the issue endpoint at most this many times, waiting this long for each answer.
ISSUE_ATTEMPTS = 6
ISSUE_LIMIT = 8.0


@dataclass
class IssueOutcome:
    """What the platform got from the merchant for one order: ``result`` 1 (codes) or 2 (refused), or
    ``None`` after every call failed; the calls made and how long each took."""

    result: int | None = None
    codes: list[str] = field(default_factory=list)
    calls: int = 0
    seconds: list[float] = field(default_factory=list)


class FakeLocalLife(FakeChannelServer):
    """The local-life platform of ``docs/connectors/locallife.md``: SPI calls out, verification both ways."""

    def __init__(
        self, client_key: str = "kaquan-client", client_secret: str = "ll-secret", **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.client_key = client_key
        self.client_secret = client_secret
        #: code → {"order_id", "state": issued | verified_here | verified_by_merchant | refunded, "verify_token"}
        self.codes: dict[str, dict[str, Any]] = {}
        #: order id → its ``issue_code`` message (retried with the same ``msg_id``)
        self.issue_messages: dict[str, dict[str, Any]] = {}
        #: code → how many verifications reported by the merchant the platform applied
        self.verifications: dict[str, int] = {}

    def route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        timestamp = headers.get("x-life-timestamp", "")
        expected = hmac_hex(self.client_secret, f"{timestamp}\n{path}\n".encode() + body)
        if headers.get("x-life-client-key") != self.client_key or not hmac.compare_digest(
            expected, headers.get("x-life-sign", "")
        ):
            return _ll({"error_code": 2190008, "description": "invalid signature"})
        handler = {
            "/goodlife/v1/account/check": self._check,
            "/goodlife/v1/goods/stock/sync": self._stock,
            "/goodlife/v1/fulfilment/certificate/verify": self._verify,
            "/goodlife/v1/settle/bill/query": self._bills,
        }.get(path)
        if handler is None:
            return json_reply({"error": "not found"}, 404)
        return handler(parse_json(body))

    def _check(self, params: dict[str, Any]) -> Reply:
        return _ll({"error_code": 0, "description": "success", "account_name": "卡券生活馆"})

    def _stock(self, params: dict[str, Any]) -> Reply:
        results = []
        for item in params["items"]:
            known, stock = self.apply_stock(
                item["out_sku_id"],
                int(item["stock_qty"]),
                int(item["price"]),
                bool(item["on_sale"]),
                int(item["version"]),
            )
            code = 0 if known else 2119404
            results.append(
                {
                    "out_sku_id": item["out_sku_id"],
                    "error_code": code,
                    "stock_qty": stock,
                    "description": "success" if known else "sku not found",
                }
            )
        return _ll({"error_code": 0, "description": "success", "results": results})

    def _verify(self, params: dict[str, Any]) -> Reply:
        results = []
        for code in params["codes"]:
            with self.lock:
                record = self.codes.get(code)
                if record is None:
                    result = 2119404
                elif (
                    record["state"] == "verified_by_merchant"
                    and record["verify_token"] == params["verify_token"]
                ):
                    result = 0
                elif record["state"] != "issued":
                    result = 2119001
                else:
                    record.update(state="verified_by_merchant", verify_token=params["verify_token"])
                    self.verifications[code] = self.verifications.get(code, 0) + 1
                    result = 0
            results.append({"code": code, "result": result, "verify_id": f"v-{params['verify_token']}"})
        return _ll({"error_code": 0, "description": "success", "verify_results": results})

    def _bills(self, params: dict[str, Any]) -> Reply:
        bills, cursor, more = self.bill_page(
            int(params["start_time"]), int(params["end_time"]), str(params.get("cursor", "")), 100
        )
        kinds = {"sale": 1, "refund": 2, "commission": 3, "adjustment": 4}
        rows = [
            {
                "bill_id": b["bill_id"],
                "order_id": b["order_id"],
                "line_id": b["line_id"],
                "bill_type": kinds[b["kind"]],
                "amount": b["amount"],
                "commission": b["commission"],
                "settle_time": b["time"],
            }
            for b in bills
        ]
        return _ll(
            {"error_code": 0, "description": "success", "bills": rows, "cursor": cursor, "has_more": more}
        )

    # the platform's SPI calls ----------------------------------------------------------------------

    def spi(
        self, kind: str, content: dict[str, Any], *, msg_id: str = "", timestamp: int | None = None
    ) -> SignedCall:
        """A signed SPI call of ``kind`` (issue_code, query_code, verify_notify, refund_notify, ping)."""
        message = {
            "msg_id": msg_id or self.next_id("spi"),
            "type": kind,
            "create_time": self.now(),
            "content": content,
        }
        call = self.sign(dumps(message), timestamp=timestamp)
        call.message = message
        return call

    def sign(self, body: bytes, *, timestamp: int | None = None) -> SignedCall:
        """An SPI call carrying ``body`` as is, signed as the platform signs."""
        ts = str(self.now() if timestamp is None else timestamp)
        headers = {
            "Content-Type": "application/json",
            "X-Life-Client-Key": self.client_key,
            "X-Life-Timestamp": ts,
            "X-Life-Sign": hmac_hex(self.client_secret, f"{ts}\n".encode() + body),
        }
        return SignedCall(headers=headers, query={}, body=body, message={})

    def issue_call(self, order_id: str) -> SignedCall:
        """The ``issue_code`` call for an order again (a retry: same ``msg_id`` and content, signed anew)."""
        message = self.issue_messages[order_id]
        return self.spi("issue_code", message["content"], msg_id=message["msg_id"])

    def buy(
        self, sku: str, count: int = 1, unit_price: int = 4900, *, open_id: str = "ou-1", phone: str = ""
    ) -> SignedCall:
        """A buyer pays for ``count`` vouchers of ``sku``: the ``issue_code`` SPI call the platform makes."""
        order = self.new_order([(sku, count, unit_price)], {"open_id": open_id, "phone": phone, "ip": ""})
        line_id = next(iter(order.lines))
        content = {
            "order_id": order.order_id,
            "line_id": line_id,
            "pay_time": order.paid_at,
            "out_sku_id": sku,
            "count": count,
            "unit_price": unit_price,
            "buyer": order.buyer,
        }
        call = self.spi("issue_code", content)
        with self.lock:
            self.issue_messages[order.order_id] = call.message
        return call

    def take_issue_reply(self, order_id: str, body: bytes) -> list[str]:
        """Read the merchant's answer to ``issue_code`` as the platform does: the codes it now sells."""
        data = json.loads(body)["data"]
        if data.get("error_code") != 0 or data.get("result") != 1:
            return []
        codes = [c["code"] for c in data.get("codes", [])]
        with self.lock:
            for code in codes:
                self.codes.setdefault(code, {"order_id": order_id, "state": "issued", "verify_token": ""})
        return codes

    def issue_until_answered(
        self,
        url: str,
        order_id: str,
        *,
        attempts: int = ISSUE_ATTEMPTS,
        limit: float = ISSUE_LIMIT,
        pause: float = 0.0,
    ) -> IssueOutcome:
        """Call the merchant's ``url`` with the order's ``issue_code`` as the platform does: each call waits at
        most ``limit`` seconds; a call without a good answer (none in time, not 2xx, unreadable, ``error_code``
        not 0) is made again — signed anew, same ``msg_id`` — up to ``attempts`` calls, ``pause`` apart."""
        outcome = IssueOutcome()
        for _ in range(attempts):
            started = time.perf_counter()
            status, body = self.issue_call(order_id).post(url, timeout=limit)
            outcome.calls += 1
            outcome.seconds.append(time.perf_counter() - started)
            try:
                data = json.loads(body)["data"] if 200 <= status < 300 else {}
            except (ValueError, KeyError, TypeError):
                data = {}
            if isinstance(data, dict) and data.get("error_code") == 0 and data.get("result") in (1, 2):
                outcome.result = int(data["result"])
                outcome.codes = self.take_issue_reply(order_id, body)
                return outcome
            time.sleep(pause)
        return outcome

    def verify_on_channel(self, code: str, *, poi_id: str = "poi-1") -> SignedCall:
        """A store verifies ``code`` through the platform: the ``verify_notify`` SPI call."""
        with self.lock:
            record = self.codes[code]
            record["before"] = record["state"]
            record["state"] = "verified_here"
        content = {
            "order_id": record["order_id"],
            "code": code,
            "verify_time": self.now(),
            "verify_id": self.next_id("vf"),
            "poi_id": poi_id,
        }
        return self.spi("verify_notify", content)

    def take_verify_reply(self, code: str, body: bytes) -> bool:
        """Read the merchant's answer to ``verify_notify`` as the platform does: ``result`` 2 (refused) undoes
        the platform's verification (the code is back as it was). ``True`` when the verification stands."""
        data = json.loads(body)["data"]
        stands = data.get("error_code") == 0 and data.get("result") == 1
        with self.lock:
            record = self.codes[code]
            if not stands and record["state"] == "verified_here":
                record["state"] = record.pop("before", "issued")
        return stands

    def refund_request(self, order_id: str, count: int = 1) -> SignedCall:
        """The buyer asks for a refund: the ``refund_notify`` SPI call (the merchant may refuse it)."""
        order = self.orders[order_id]
        line_id, line = next(iter(order.lines.items()))
        content = {
            "order_id": order_id,
            "line_id": line_id,
            "refund_id": self.next_id("rf"),
            "count": count,
            "refund_amount": count * line["price"],
            "reason": "buyer changed mind",
        }
        return self.spi("refund_notify", content)


def _ll(data: dict[str, Any]) -> Reply:
    return json_reply(
        {"data": data, "extra": {"logid": secrets.token_hex(8), "error_code": data.get("error_code", 0)}}
    )
