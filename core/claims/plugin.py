"""The claims domain: claim links, the member's H5 pages, OTP sign-in and transfer (转赠)."""

from core.domains import Domain

domain = Domain(
    name="claims",
    api=("core.claims.api:ClaimLinkController",),
    h5=("h5.pages:H5Controller",),
    models=("core.claims.models",),
    jobs=("core.claims.otp",),
    events={
        "code.claimed": "A member claimed a code through a claim link.",
        "code.transferred": "A member transferred an unredeemed code to another phone (转赠).",
    },
)
