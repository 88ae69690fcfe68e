"""Claim links, the member's H5 sign-in (OTP) and transfer (转赠), and campaigns."""
