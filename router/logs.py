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


# errors the Kafka client logs and then retries by itself (a partition's leader moving,
# a topic just created): a warning for the operator, not an error
_RETRIED_BY_KAFKA = ("NotLeaderForPartitionError", "UnknownTopicOrPartitionError",
                     "LeaderNotAvailableError", "GroupCoordinatorNotAvailableError",
                     "NotCoordinatorForGroupError")


class RetriedByKafka(logging.Filter):
    """Shows aiokafka's errors that it retries itself as warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote the record when it names an error the client retries; keep every record."""
        if record.levelno >= logging.ERROR and record.name.startswith("aiokafka"):
            text = record.getMessage()
            if any(name in text for name in _RETRIED_BY_KAFKA):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


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
        "filters": {"retried": {"()": RetriedByKafka}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main",
                                "filters": ["retried"]}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # the stream library is chatty at INFO about every rebalance step
        "loggers": {"faust": {"level": "WARNING"}, "mode": {"level": "WARNING"},
                    "aiokafka": {"level": "WARNING"}},
    }
