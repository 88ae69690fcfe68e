"""The sandbox shop as the channel conformance kit sees it: a :class:`plugins.testing.ChannelSimulator` over
:data:`plugins.builtin.sandbox_channel.WORLD` (the shop lives in process, so failures are played there)."""

from __future__ import annotations

from plugins import CallbackReply, CallbackRequest, ChannelOrder
from plugins.builtin import sandbox_channel as sandbox
from plugins.builtin.sandbox_channel import SandboxConfig
from plugins.testing import ChannelSimulator


class SandboxSimulator(ChannelSimulator):
    """The sandbox shop of the kit's account, seen from the channel's side (it lives in process)."""

    def shop(self) -> sandbox.Shop:
        return sandbox.WORLD.shop(self.account_id)

    def fail_next(self, fault: str, times: int = 1) -> None:
        sandbox.fail_next(self.account_id, fault, times)  # type: ignore[arg-type]  # the kit checks the name

    def pending_faults(self) -> int:
        return len(self.shop().faults)

    def clear_faults(self) -> None:
        self.shop().faults.clear()

    def place_order(self, sku: str, quantity: int) -> ChannelOrder:
        return sandbox.place_order(self.account_id, sku, quantity, now=self.now())

    def order_callback(self, order_id: str) -> CallbackRequest:
        event = next(e for e in self.shop().events if e.order is not None and e.order.order_id == order_id)
        return sandbox.signed_callback(self.secret, event, now=self.now())

    def signed(self, body: bytes) -> CallbackRequest:
        return sandbox.signed_callback(self.secret, body=body, now=self.now())

    def shown(self, sku: str) -> int | None:
        item = self.shop().skus.get(sku)
        return None if item is None else item.available

    def invalid_sku(self) -> str:
        return "not a sku"

    def received(self, order_id: str, line_id: str) -> list[str]:
        return [c.code for c in self.shop().received.get((order_id, line_id), [])]

    def refund(self, order_id: str) -> None:
        sandbox.refund(self.account_id, order_id, now=self.now())

    def issue_callback(self, sku: str, quantity: int) -> CallbackRequest:
        event = sandbox.issue_request(self.account_id, sku, quantity, now=self.now())
        return sandbox.signed_callback(self.secret, event, now=self.now())

    def read_issue_reply(self, order_id: str, reply: CallbackReply) -> list[str]:
        return [c.code for c in sandbox.record_issued(self.account_id, order_id, reply)]

    def redemptions_recorded(self, code: str) -> int:
        return 1 if self.shop().redeemed.get(code) == "kaquan" else 0

    @property
    def secret(self) -> str:
        assert isinstance(self.config, SandboxConfig)
        return self.config.signing_secret
