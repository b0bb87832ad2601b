"""Every log line names the request (or task, or command) it belongs to.

``RequestIdFilter`` copies the open audit context's request id onto each record; the web sets it per
request (``RequestIdMiddleware``, echoed in ``X-Request-ID``), the Celery base task restores the
requester's, management commands open their own. Lines logged outside any context carry ``-``.
``JsonFormatter`` writes one JSON object per line (``LOG_FORMAT=json``) for log collectors.
"""

from __future__ import annotations

import json
import logging

from governance.core import context

NO_REQUEST = "-"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        if ctx is not None:
            record.request_id = ctx.request_id
        else:
            # Django logs a 4xx/5xx response ("Not Found: /x") after the middleware has closed the
            # context, with the request attached to the record: the id is on it
            request_id = getattr(getattr(record, "request", None), "id", None)
            record.request_id = request_id if isinstance(request_id, str) else NO_REQUEST
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", NO_REQUEST),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
