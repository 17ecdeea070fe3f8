"""Keep credentials out of the crawl log.

botocore, s3transfer and urllib3 log every signed request at DEBUG: the
``Authorization`` header (with the access key id) and ``X-Amz-Security-Token`` (the
session token) end up in ``--logfile`` when the crawl runs with ``LOG_LEVEL=DEBUG``.
:func:`protect_log` (called by ``newsarchive crawl`` once Scrapy has installed its
root handler) caps those wire-level loggers at INFO and adds a filter to the root
handlers that masks the values of the AWS credential variables of the environment in
any record that still carries them (an exception message, a URL with a presigned
token)."""

from __future__ import annotations

import logging
import os

#: Loggers that print signed requests/headers at DEBUG.
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
MASK = "***"


class RedactSecrets(logging.Filter):
    """Replace each of ``secrets`` (strings of 8+ characters) by ``***`` in a record's
    formatted message and exception text; the record is always kept."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        text = record.exc_text or ""
        if any(s in message or s in text for s in self.secrets):
            for s in self.secrets:
                message, text = message.replace(s, MASK), text.replace(s, MASK)
            record.msg, record.args = message, None
            record.exc_text = text or None
        return True


def protect_log(environ=os.environ) -> None:
    """Cap :data:`WIRE_LOGGERS` at INFO and add :class:`RedactSecrets` (the values of
    :data:`SECRET_VARIABLES` in ``environ``) to every root handler."""
    for name in WIRE_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    redact = RedactSecrets([environ.get(v, "") for v in SECRET_VARIABLES])
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(redact)
