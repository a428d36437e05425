"""Security events: one JSON object per line on the `<package>.security` logger.

Logins (succeeded or failed, with a reason), detected refresh-token reuse (a theft signal),
logouts and refused tokens, each with the client's address when a request is being served.
Never a token, a password or a username that failed: ids and reason codes only.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

#: The logger security events go to; `configure` gives it a JSON-lines handler.
log = logging.getLogger(f"{__package__.partition('.')[0]}.security")

#: The address of the client whose request is being served (set by the web layer).
client_address: ContextVar[str | None] = ContextVar("client_address", default=None)


def security_event(event: str, **fields: object) -> None:
    """Log one security event with its fields (None values are left out)."""
    if not log.isEnabledFor(logging.INFO):
        return
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "client": client_address.get(),
        **fields,
    }
    log.info(json.dumps({k: v for k, v in record.items() if v is not None}, default=str))


def configure() -> None:
    """Send security events to standard error as JSON lines, unless logging was configured
    for this logger already (then its handlers decide)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
