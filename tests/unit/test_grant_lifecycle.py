"""The grant and grant-item state machine (core/grants/lifecycle.py): legal moves, illegal ones refused,
and the grant status derived from its units."""

from __future__ import annotations

from collections import Counter

import pytest

from core.grants.lifecycle import (
    GRANT_STATUSES,
    GRANT_TRANSITIONS,
    ITEM_STATUSES,
    ITEM_TRANSITIONS,
    IllegalTransition,
    awaiting_delivery,
    check_grant,
    delivery_status,
    derive_grant_status,
    grant_can,
    grant_sources,
    item_move,
    item_transition,
)
from core.grants.models import GRANT_STATUSES as MODEL_GRANT_STATUSES
from core.grants.models import ITEM_STATUSES as MODEL_ITEM_STATUSES


def test_the_tables_name_only_known_statuses_and_the_models_use_them() -> None:
    assert MODEL_GRANT_STATUSES == GRANT_STATUSES and MODEL_ITEM_STATUSES == ITEM_STATUSES
    for (old, _event), new in ITEM_TRANSITIONS.items():
        assert old in ITEM_STATUSES and new in ITEM_STATUSES
    assert set(GRANT_TRANSITIONS) == set(GRANT_STATUSES)
    for events in GRANT_TRANSITIONS.values():
        for targets in events.values():
            assert targets <= set(GRANT_STATUSES)


@pytest.mark.parametrize(("status", "event", "target"), [
    ("held", "redeem", "redeemed"),
    ("redeemed", "rollback", "held"),
    ("held", "void", "voided"),
    ("held", "expire", "expired"),
    ("held", "transfer", "transferred"),
])
def test_item_moves(status: str, event: str, target: str) -> None:
    assert item_transition(status, event) == target


@pytest.mark.parametrize(("status", "event"), [
    ("redeemed", "redeem"), ("redeemed", "void"), ("redeemed", "transfer"), ("redeemed", "expire"),
    ("held", "rollback"), ("voided", "redeem"), ("expired", "redeem"), ("expired", "transfer"),
    ("transferred", "redeem"), ("transferred", "rollback"), ("voided", "rollback"), ("held", "fly"),
])
def test_illegal_item_moves_are_refused(status: str, event: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        item_transition(status, event)
    assert info.value.status == 409 and info.value.code == "illegal_transition"
    assert info.value.extra == {"status": status, "event": event}


def test_item_move_gives_the_single_source_of_an_event() -> None:
    assert item_move("redeem") == ("held", "redeemed")
    assert item_move("rollback") == ("redeemed", "held")
    with pytest.raises(ValueError):
        item_move("no-such-event")


def test_grant_moves_and_refusals() -> None:
    assert set(grant_sources("void")) == {"created", "delivery_failed"}
    assert set(grant_sources("deliver")) == {"created", "delivery_failed"}
    assert grant_can("created", "use", "redeemed") and grant_can("delivered", "use", "partially_redeemed")
    assert grant_can("redeemed", "rollback", "delivered") and grant_can("partially_redeemed", "use", "redeemed")
    for status, event, target in [
        ("delivered", "void", "voided"), ("partially_redeemed", "void", "voided"), ("redeemed", "void", "voided"),
        ("voided", "use", "redeemed"), ("expired", "use", "redeemed"), ("voided", "deliver", "delivered"),
        ("redeemed", "use", "partially_redeemed"), ("delivered", "rollback", "created"),
        ("partially_redeemed", "expire", "expired"), ("delivered", "deliver", "delivered"),
    ]:
        assert not grant_can(status, event, target), (status, event, target)
        with pytest.raises(IllegalTransition):
            check_grant(status, event, target)


def test_grant_status_is_derived_from_its_units() -> None:
    c = Counter
    assert derive_grant_status("created", "created", c(held=2), 0) == "created"
    assert derive_grant_status("created", "created", c(held=1, redeemed=1), 0) == "partially_redeemed"
    assert derive_grant_status("partially_redeemed", "created", c(redeemed=2), 0) == "redeemed"
    # transferred-away units do not count; the recipient's unit is in the same grant
    assert derive_grant_status("delivered", "delivered", c(transferred=1, redeemed=1), 0) == "redeemed"
    # a stored-value card partly spent is still held, but its grant is used
    assert derive_grant_status("delivered", "delivered", c(held=1), 1) == "partially_redeemed"
    # rolled back: the grant says where its delivery stands again
    assert derive_grant_status("redeemed", "delivered", c(held=1), 0) == "delivered"
    assert derive_grant_status("created", "created", c(expired=2), 0) == "expired"
    assert derive_grant_status("partially_redeemed", "created", c(redeemed=1, expired=1), 0) == "partially_redeemed"
    assert derive_grant_status("voided", "created", c(voided=1), 0) == "voided"


def test_a_recall_ends_a_grant_with_nothing_held_or_used() -> None:
    """Codes voided in the inventory: the grant follows its units (grant event ``recall``)."""
    c = Counter
    assert item_move("void") == ("held", "voided")
    assert set(grant_sources("recall")) == {"created", "delivered", "delivery_failed"}
    assert grant_can("delivered", "recall", "voided") and grant_can("created", "recall", "expired")
    # a grant void (POST …/void) still only takes undelivered grants
    assert not grant_can("delivered", "void", "voided")
    for status in ("partially_redeemed", "redeemed", "expired", "voided"):
        assert not grant_can(status, "recall"), status
    assert derive_grant_status("delivered", "delivered", c(voided=2), 0) == "voided"
    assert derive_grant_status("delivered", "delivered", c(held=1, voided=1), 0) == "delivered"
    assert derive_grant_status("created", "created", c(expired=1, voided=1), 0) == "expired"
    assert derive_grant_status("partially_redeemed", "created", c(redeemed=1, voided=1), 0) == "partially_redeemed"
    # a stored-value card spent in part, then recalled: the grant was used
    assert derive_grant_status("partially_redeemed", "created", c(voided=1), 1) == "partially_redeemed"
    # a use rolled back after the recall: nothing used or held any more
    assert grant_can("partially_redeemed", "rollback", "voided")
    assert derive_grant_status("partially_redeemed", "created", c(voided=1), 0) == "voided"


def test_delivery_status() -> None:
    assert delivery_status("sms", delivered=True, delivery_failed=False) == "delivered"
    assert delivery_status("sms", delivered=False, delivery_failed=True) == "delivery_failed"
    assert delivery_status(None, delivered=False, delivery_failed=False) == "created"


def test_awaiting_delivery() -> None:
    assert awaiting_delivery("created", "sms", None)
    assert awaiting_delivery("partially_redeemed", "sms", None)  # the member still needs the other units
    assert not awaiting_delivery("redeemed", "sms", None)
    assert not awaiting_delivery("created", None, None)
    assert not awaiting_delivery("voided", "email", None)
    assert not awaiting_delivery("created", "sms", "2026-12-06T06:00:00Z")


def test_rolling_back_the_last_use_of_an_expired_unit_ends_the_grant_expired() -> None:
    """A stored-value card partly spent (its unit still held), then expired: the grant stays
    partially_redeemed while the spend stands; undoing it leaves nothing used or held."""
    items = Counter({"expired": 1})
    assert derive_grant_status("partially_redeemed", "delivered", items, partly_used=1) == "partially_redeemed"
    after = derive_grant_status("partially_redeemed", "delivered", items, partly_used=0)
    assert after == "expired"
    check_grant("partially_redeemed", "rollback", after)  # legal: raises nothing
    check_grant("redeemed", "rollback", "expired")
