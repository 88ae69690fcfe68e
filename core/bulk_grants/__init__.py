"""Bulk grants (employee welfare): a recipient file → validation report → a job granting row by row."""
