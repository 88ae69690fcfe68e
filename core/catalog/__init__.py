"""The catalog: products (entitlements) a tenant sells or gives, with validity and usage rules."""
