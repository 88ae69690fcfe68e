from tests.integration.channel_orders.conftest import channel, quiet_relay, seller

__all__ = ["channel", "quiet_relay", "seller"]
