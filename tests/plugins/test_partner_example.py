"""The example partner package (examples/partner_notifier, installed through its entry point) conforms."""

from __future__ import annotations

from acme_notifier import AcmeSmsNotifier

from plugins.testing import notifier_conformance

TestAcmeSmsPartner = notifier_conformance(AcmeSmsNotifier(), entry_point="acme_notifier")
