"""The grants domain: codes granted to members or contacts, their delivery, expiry, void and recall."""

import datetime as dt

from core.domains import OPERATORS, Domain, Periodic

domain = Domain(
    name="grants",
    api=("core.grants.api:GrantController",),
    console=("admin_ui.grants_pages:GrantsController",),
    models=("core.grants.models",),
    jobs=("core.grants.delivery", "core.grants.jobs"),
    periodic=(Periodic("expire_grant_items", "expire_grant_items", dt.timedelta(hours=1)),),
    events={
        "grant.created": "Codes were granted to a member or a contact.",
        "grant.delivered": "A grant's notification was accepted by the notifier (e-mail, SMS).",
        "grant.delivery_failed": "A grant's notification could not be delivered.",
        "grant.voided": (
            "A grant was voided: an undelivered one, its codes back to stock; or every unit's code was voided "
            "in the inventory (cause codes_voided)."
        ),
    },
    scopes={
        "grants:read": "List and read grants and their codes (masked unless the client may reveal).",
        "grants:write": "Grant codes to members or contacts, void undelivered grants and run bulk grants.",
    },
    permissions={"grants.manage": OPERATORS},
    provides={"inventory.code_holders": ("core.grants.recall:GRANT_HOLDERS",)},
)
