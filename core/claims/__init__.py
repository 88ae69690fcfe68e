"""Claims (领取): claim links, one-time phone codes, the holder's codes and transfer (转赠) for the H5 pages."""
