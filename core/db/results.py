"""What an executed INSERT, UPDATE or DELETE reports, typed."""

from __future__ import annotations

from typing import cast

from sqlalchemy.engine import CursorResult, Result


def rowcount(result: Result) -> int:
    """The number of rows the statement matched.

    ``AsyncSession.execute`` is typed to return a plain :class:`Result`, but an INSERT, UPDATE or DELETE
    always gives a :class:`CursorResult`, which carries the count.
    """
    return cast(CursorResult, result).rowcount
