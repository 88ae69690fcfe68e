"""Campaigns (活动): public claim pages handing a product's codes to confirmed phones, within limits."""
