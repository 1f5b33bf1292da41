"""Structured logs: one JSON object per line off a terminal, readable lines on one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "logging_config"]

# attributes every LogRecord has; anything else was passed in `extra=` and is context
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, with `extra=` fields (event_id, ...) at top level."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record and its context fields as JSON."""
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def logging_config(level: str, json_lines: bool | None) -> dict[str, Any]:
    """A dictConfig for the whole process; JSON unless stderr is a terminal."""
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if use_json
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # the stream library is chatty at INFO about every rebalance step
        "loggers": {"faust": {"level": "WARNING"}, "mode": {"level": "WARNING"},
                    "aiokafka": {"level": "WARNING"}},
    }
