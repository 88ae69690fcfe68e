"""The campaigns domain: public campaign pages where members claim codes with their phone (活动领券)."""

from core.domains import Domain

domain = Domain(
    name="campaigns",
    api=("core.campaigns.api:CampaignController",),
    console=("admin_ui.campaigns_pages:CampaignsController",),
    models=("core.campaigns.models",),
)
