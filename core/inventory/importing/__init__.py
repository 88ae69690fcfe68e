"""Importing card keys (卡密) bought from suppliers, and generating a tenant's own codes.

The pipeline: :mod:`parsing` reads what suppliers send (CSV/TXT in UTF-8, BOM, UTF-16, GBK/GB18030;
XLSX/XLS/ODS; pasted text) and maps the columns; :mod:`validation` checks every row and builds the report;
:mod:`staging` keeps the valid rows encrypted on the :class:`~core.inventory.models.CodeImport` until the
user confirms; :mod:`services` runs the confirmed import (one transaction: batch, sealed codes, audit) and
code generation; :mod:`jobs` declares the background jobs; :mod:`api` is the HTTP surface.
"""
