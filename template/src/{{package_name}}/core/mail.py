"""Mail: messages (password-reset links) sent through SMTP in the background.

A request never waits for SMTP: it hands its message to an `Outbox`, which sends it from a
thread of its own. So a slow or failing mail server never blocks a request, and the response
time of the password-reset endpoint does not tell whether a message was sent at all (which
would tell whether the address belongs to an account).

`outbox_of(settings)` picks the transport: SMTP when `SMTP_HOST` is set; in development
without it, the log (a developer follows the link from there); in production without it,
none (the service then offers no password reset).

Messages carry secrets (a reset link is as good as the password for half an hour), so the
outbox logs a failure with the recipient's domain and the reason only, never the body or the
whole address.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ..settings import Settings

#: The logger of this module: failures, and in development the messages themselves.
log = logging.getLogger(f"{__package__.partition('.')[0]}.mail")

Security = Literal["starttls", "tls", "none"]


class MailError(Exception):
    """Raised when a message cannot be sent safely (the server does not offer STARTTLS)."""


@dataclass(frozen=True)
class Message:
    """A plain-text message to one recipient."""

    to: str
    subject: str
    text: str


class Transport(Protocol):
    """Something that sends a message now, or raises."""

    def send(self, message: Message) -> None:
        """Send `message`, raising if it could not be handed over."""
        ...


def recipient_domain(address: str) -> str:
    """The domain of an address, which is all the logs say of a recipient."""
    domain = parseaddr(address)[1].rpartition("@")[2]
    return domain.lower() or "an unknown domain"


class SmtpTransport:
    """Sends each message over a new SMTP connection, with TLS unless told otherwise.

    `starttls` (submission, usually port 587) upgrades the connection and refuses to send if
    the server does not offer STARTTLS: never plain text instead. `tls` connects with TLS at
    once (usually port 465). `none` sends in plain text, which settings allow outside
    development only to a server on this host. Certificates are verified with the system's
    trusted authorities unless `ssl_context` says otherwise (tests pass their own).
    Thread-safe: nothing is shared between sends.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self._ssl_context = ssl_context

    @classmethod
    def from_settings(
        cls, settings: Settings, *, ssl_context: ssl.SSLContext | None = None
    ) -> SmtpTransport:
        """The transport `SMTP_*` and `MAIL_FROM` describe (`SMTP_HOST` must be set)."""
        if not settings.smtp_host:
            raise ValueError("SMTP_HOST is not set")
        password = settings.smtp_password
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.mail_from,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            timeout=settings.smtp_timeout,
            ssl_context=ssl_context,
        )

    def __repr__(self) -> str:
        return f"SmtpTransport({self.host!r}, {self.port}, security={self.security!r})"

    def compose(self, message: Message) -> EmailMessage:
        """The message as it is sent: From, To, Subject, Date, Message-ID and the text."""
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        # The sender's domain, not this host's name, which may be internal (and slow to look up).
        email["Message-ID"] = make_msgid(domain=recipient_domain(self.sender))
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        email.set_content(message.text)
        return email

    def send(self, message: Message) -> None:
        """Connect, secure the connection, log in if a username is set, and send."""
        email = self.compose(message)
        context = self._ssl_context or ssl.create_default_context()
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.security == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise MailError(
                        f"{self.host}:{self.port} does not offer STARTTLS; the message was not "
                        f"sent (SMTP_SECURITY=starttls never falls back to plain text)"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password or "")
            smtp.send_message(email, from_addr=parseaddr(self.sender)[1], to_addrs=[message.to])


class LogTransport:
    """Development without `SMTP_HOST`: writes each whole message to the log at WARNING, so a
    developer can follow the link in it. Never for production: the log would hold the secrets."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    def send(self, message: Message) -> None:
        """Log the message: its headers, a blank line, and its text as it is."""
        log.warning(
            "Mail not sent (SMTP_HOST is not set), here it is:\n"
            "From: %s\nTo: %s\nSubject: %s\n\n%s",
            self.sender,
            message.to,
            message.subject,
            message.text,
        )


class Outbox:
    """Sends messages from a bounded queue in a background daemon thread.

    `submit` returns at once whatever happens next. A full queue drops the message (logged as
    an error); a failed send is tried `attempts` times in all, waiting `backoff` seconds and
    then twice as long each time, and then logged as an error. The thread starts with the
    first message (so a process that forks after building the outbox, like gunicorn's master,
    hands a working outbox to its workers). Thread-safe.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        capacity: int = 100,
        attempts: int = 3,
        backoff: float = 1.0,
    ) -> None:
        if capacity < 1 or attempts < 1 or backoff < 0:
            raise ValueError("capacity and attempts must be at least 1, backoff at least 0")
        self.transport = transport
        self.attempts = attempts
        self.backoff = backoff
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._abandoned = threading.Event()  # close() gave up waiting: stop retrying

    def __repr__(self) -> str:
        return f"Outbox({self.transport!r})"

    def submit(self, message: Message) -> None:
        """Queue `message` to be sent in the background; never waits, never raises."""
        with self._lock:
            if self._closed:
                log.error(
                    "Mail to a recipient at %s dropped: the outbox is closed",
                    recipient_domain(message.to),
                )
                return
            try:
                self._queue.put_nowait(message)
            except queue.Full:
                log.error(
                    "Mail to a recipient at %s dropped: the outbox is full (%d waiting)",
                    recipient_domain(message.to),
                    self._queue.maxsize,
                )
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mail-outbox", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking messages, send those queued, and stop the thread, waiting at most
        `timeout` seconds; True if every message was dealt with (sent or failed) in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None or not thread.is_alive():
            return self._queue.empty()
        with contextlib.suppress(queue.Full):  # then the thread stops when abandoned, below
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._abandoned.set()
            log.error(
                "The outbox did not finish within %s s; %d message(s) were not sent",
                timeout,
                self._queue.qsize(),
            )
            return False
        return True

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            if self._abandoned.is_set():  # close() gave up: drop what is left, and stop
                while message is not None:
                    log.error("Mail to a recipient at %s dropped", recipient_domain(message.to))
                    try:
                        message = self._queue.get_nowait()
                    except queue.Empty:
                        return
                return
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        domain = recipient_domain(message.to)
        for attempt in range(1, self.attempts + 1):
            try:
                self.transport.send(message)
            except Exception as exc:  # whatever went wrong, the outbox goes on
                reason = _reason(exc, message.to)
                if attempt == self.attempts or self._abandoned.is_set():
                    log.error(
                        "Mail to a recipient at %s not sent after %d attempt(s): %s",
                        domain,
                        attempt,
                        reason,
                    )
                    return
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning(
                    "Mail to a recipient at %s failed (attempt %d of %d, next in %s s): %s",
                    domain,
                    attempt,
                    self.attempts,
                    delay,
                    reason,
                )
                if self._abandoned.wait(delay):
                    log.error("Mail to a recipient at %s not sent: the outbox closed", domain)
                    return
            else:
                log.info("Mail sent to a recipient at %s", domain)
                return


def _reason(exc: BaseException, address: str) -> str:
    """Why a send failed, for the log: the exception without the recipient's address (a
    server's reply may quote it)."""
    text = f"{type(exc).__name__}: {exc}"
    recipient = parseaddr(address)[1] or address
    for secret in {address, recipient} - {""}:
        text = re.sub(
            re.escape(secret),
            f"<a recipient at {recipient_domain(address)}>",
            text,
            flags=re.IGNORECASE,
        )
    return text


def outbox_of(settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> Outbox | None:
    """The outbox the settings ask for: through SMTP when `SMTP_HOST` is set; into the log in
    development without it; None in production without it (then offer no password reset)."""
    if settings.smtp_host:
        return Outbox(SmtpTransport.from_settings(settings, ssl_context=ssl_context))
    if settings.environment == "development":
        return Outbox(LogTransport(settings.mail_from))
    return None
