"""The members domain: the tenant's members (phones encrypted, masked on screen)."""

from core.domains import ADMINS, EVERYONE, OPERATORS, Domain

domain = Domain(
    name="members",
    api=("core.members.api:MemberController",),
    console=("admin_ui.members_pages:MembersController", "admin_ui.exports_pages:ExportsController"),
    models=("core.members.models",),
    scopes={
        "members:read": "List and read members (phones masked).",
        "members:write": "Create, import and change members.",
    },
    permissions={
        "members.read": EVERYONE,
        "members.manage": OPERATORS,
        "data.export": ADMINS,  # XLSX exports of members and grants (audited)
        "members.phones": frozenset({"owner"}),  # whole phone numbers in an export (else masked)
    },
)
