"""The whole kaquan notifier conformance suite, in one line."""

from acme_notifier import AcmeSmsNotifier

from plugins.testing import notifier_conformance

TestAcmeSms = notifier_conformance(AcmeSmsNotifier(), entry_point="acme_notifier")
