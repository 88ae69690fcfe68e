"""The tenants domain: tenants, console users, API clients, OAuth, the operator console and platform API."""

from core.domains import ADMINS, EVERYONE, Domain

domain = Domain(
    name="tenants",
    api=(
        "tenants.api_tenant:OAuthController",
        "tenants.api_tenant:TenantApiController",
        "tenants.api_tenant:ApiClientsController",
        "tenants.api_platform:PlatformLoginController",
        "tenants.api_platform:PlatformController",
    ),
    console=(
        "admin_ui.console_auth:ConsoleAuthController",
        "admin_ui.overview_pages:DashboardController",
        "admin_ui.console_pages:UsersController",
        "admin_ui.console_pages:ClientsController",
    ),
    platform=("admin_ui.platform:PlatformAuthController", "admin_ui.platform:PlatformConsoleController"),
    models=("tenants.models",),
    scopes={
        "tenant:read": "Read the tenant's profile, plan and quotas.",
        "users:read": "List and read console users.",
        "users:write": "Invite console users.",
        "clients:manage": (
            "Create, list and revoke API clients, with scopes the caller holds"
            " (only an owner or admin in the console, or the CLI, can give this scope)."
        ),
    },
    permissions={"tenant.read": EVERYONE, "users.manage": ADMINS, "clients.manage": ADMINS},
)
