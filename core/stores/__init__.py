"""Stores (门店): the places where codes are redeemed, and which clerks (核销员) work at which store."""
