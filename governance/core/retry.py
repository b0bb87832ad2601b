"""Run a service's transaction again, once, when PostgreSQL aborted it to break a deadlock or a
serialization conflict.

The lock order written down in ``governance/audit/services.py`` keeps the known paths from
deadlocking; this is for whatever it does not foresee. An aborted transaction changed nothing,
so running the whole service again is safe. A second abort is answered ``Busy`` (503
``busy_retry``), never a 500. Inside someone else's transaction there is nothing to retry
(the whole of it was aborted): the error goes up to the outermost service, which retries.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import DatabaseError, connection

from governance.core.errors import BUSY_DETAIL, Busy, is_transient_db_error

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def retry_once(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a service (outside its ``@transaction.atomic``) to retry it once after a deadlock."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if connection.in_atomic_block:
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except DatabaseError as exc:
            if not is_transient_db_error(exc):
                raise
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("%s was aborted by the database (%s); running it again", func.__qualname__, first_line)
        try:
            return func(*args, **kwargs)
        except DatabaseError as exc:
            if not is_transient_db_error(exc):
                raise
            raise Busy(BUSY_DETAIL) from exc

    return wrapper
