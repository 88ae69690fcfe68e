"""Server-rendered console for tenants and operators, and the member H5 pages."""
