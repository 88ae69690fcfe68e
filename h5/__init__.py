"""Member-facing mobile (H5) pages: claim links, my codes, transfer, campaign claims (see ``h5.pages``)."""
