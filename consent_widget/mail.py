"""Emails to supporters, in their language, and the transports that carry them.

Messages are built when their event is recorded and queued in the outbox in the same
transaction, fully serialised: a retry sends the very same bytes, with the same ``Message-ID``
and ``Date``. Every email carries the manage link, so withdrawing is one click from any of them.

``MAIL_URL`` picks the transport:

- ``smtp://[user[:password]@]host[:port]`` with optional query parameters ``starttls=1``
  (upgrade the connection, port 587 by default), ``ssl=1`` (implicit TLS, port 465 by default),
  ``cafile=/path/ca.pem`` (trust this CA instead of the system's) and ``timeout=30`` (seconds per
  network operation). The user name and password are percent-decoded, so ``%40`` stands for ``@``.
- ``file:///path/to/dir`` writes one ``.eml`` file per message, named after its ``Message-ID``.

A refusal of the recipient with a 5xx code is permanent (the outbox sets the message aside at
once); every other failure, including 4xx replies, is retried.
"""
from __future__ import annotations

import email.policy
import hashlib
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Protocol
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app
from flask_babel import force_locale, format_datetime as format_local_datetime, gettext, ngettext
from sqlalchemy.orm import Session

from . import notices, outbox, urls
from .state import effective_status, states_of
from .models import GIVEN, NEWSLETTER, ConsentState, OutboxMessage, utcnow

KIND = "email"


# --- messages --------------------------------------------------------------------------------

def _one_line(text: str) -> str:
    # A header may not contain a line break; a campaign name pasted with one must not break it.
    return " ".join(text.split())


def _locale_for(locale: str | None, campaign) -> str:
    if locale in notices.LOCALES:
        return locale
    return campaign.locale if campaign.locale in notices.LOCALES else notices.LOCALES[0]


def _render(name: str, **context) -> tuple[str, str]:
    """The text and HTML parts of ``templates/email/<name>``.

    Rendered from the Jinja environment directly, not ``render_template``: emails are also
    rendered by workers and CLI commands, where request-bound context processors cannot run.
    """
    env = current_app.jinja_env
    return (env.get_template(f"email/{name}.txt").render(**context),
            env.get_template(f"email/{name}.html").render(**context))


def _compose(campaign, to: str, locale: str, subject_line: str, text: str, html: str,
             headers: dict[str, str] | None = None) -> EmailMessage:
    sender = current_app.config["MAIL_FROM"]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    # An address with a non-ASCII local part can only travel as SMTPUTF8 (RFC 6531). Lines may
    # run to RFC 5322's 998 characters: folded at 78, a long List-Unsubscribe URL would be
    # rewritten into encoded words, which RFC 2369 forbids and mail providers then ignore.
    policy = (email.policy.SMTP if to.isascii() else email.policy.SMTPUTF8).clone(
        max_line_length=998)
    message = EmailMessage(policy=policy)
    message["From"] = sender
    message["To"] = to
    # Questions and "please delete me" replies should reach the controller, not a no-reply box.
    message["Reply-To"] = campaign.contact_email
    message["Subject"] = _one_line(subject_line)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=domain)
    # RFC 3834: tells vacation responders and ticket systems not to answer.
    message["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        message[name] = value
    # Quoted-printable keeps every body line ASCII and short, whatever the header line length.
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    # After the parts: set_content() moves every Content-* header down into the text part.
    message["Content-Language"] = locale
    return message


def _enqueue(session: Session, campaign, message: EmailMessage) -> OutboxMessage:
    return outbox.enqueue(session, kind=KIND, recipient=message["To"].addresses[0].addr_spec,
                          payload=message.as_bytes().decode("utf-8"), campaign_id=campaign.id)


def queue_confirmation(session: Session, campaign, subject, signup) -> OutboxMessage:
    """Queue the double opt-in email of ``signup`` in its language, listing what was ticked.

    Its subject line and preview name the campaign and nothing else: an inbox preview must not
    tell a passer-by which political causes the person supports.
    """
    locale = _locale_for(signup.locale, campaign)
    items = [(item.partition(":"), ticked) for item, ticked in signup.choices.items()]
    with force_locale(locale):
        labels = [(notices.item_label(campaign, purpose, network), ticked)
                  for (purpose, _, network), ticked in items]
        title = gettext("Confirm your email address for %(campaign)s", campaign=campaign.name)
        days = max(1, int(current_app.config["CONFIRM_MAX_AGE"]) // 86400)
        text, html = _render(
            "confirmation", locale=locale, campaign=campaign, preview=title,
            ticked=[label for label, ticked in labels if ticked],
            unticked=[label for label, ticked in labels if not ticked],
            confirm_url=urls.confirm_url(campaign, signup),
            manage_url=urls.manage_url(campaign, subject),
            validity=ngettext("This link works for %(num)d day.",
                              "This link works for %(num)d days.", days))
    message = _compose(campaign, subject.email, locale, title, text, html)
    return _enqueue(session, campaign, message)


def _is_given(state: ConsentState, now) -> bool:
    return effective_status(state, now) == GIVEN


def newsletter_headers(campaign, subject) -> dict[str, str]:
    """The RFC 8058 one-click unsubscribe headers for an email to a newsletter subscriber."""
    return {"List-Unsubscribe": f"<{urls.unsubscribe_url(campaign, subject)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def queue_receipt(session: Session, campaign, subject, receipt, locale: str) -> OutboxMessage | None:
    """Queue the email sent after a confirmation or withdrawal: what is given now, what is not,
    the receipt's id (``receipt`` is None when nothing changed) and the manage link.

    Returns None for a subject whose address was erased: there is no one to write to.
    """
    if not subject.email:
        return None
    locale = _locale_for(locale, campaign)
    now = utcnow()
    states = states_of(session, campaign, subject)
    newsletter_given = any(s.purpose == NEWSLETTER and _is_given(s, now) for s in states)
    with force_locale(locale):
        title = gettext("Your consent choices for %(campaign)s", campaign=campaign.name)
        text, html = _render(
            "receipt", locale=locale, campaign=campaign, preview=title,
            changed=receipt is not None,
            receipt_id=receipt.id if receipt is not None else None,
            issued_at=(format_local_datetime(receipt.issued_at, rebase=False)
                       if receipt is not None else None),
            given=[notices.item_label(campaign, s.purpose, s.network) for s in states
                   if _is_given(s, now)],
            not_given=[notices.item_label(campaign, s.purpose, s.network) for s in states
                       if not _is_given(s, now)],
            manage_url=urls.manage_url(campaign, subject))
    headers = newsletter_headers(campaign, subject) if newsletter_given else None
    message = _compose(campaign, subject.email, locale, title, text, html, headers)
    if receipt is not None:
        # The signed receipt itself, for the person to keep: any JOSE library verifies it.
        # (Adding a part moves Content-* headers into the body part: set the language again.)
        del message["Content-Language"]
        message.add_attachment(receipt.jws.encode("ascii"), maintype="application",
                               subtype="jwt", filename=f"consent-receipt-{receipt.id}.jwt")
        message["Content-Language"] = locale
    return _enqueue(session, campaign, message)


def queue_renewal(session: Session, campaign, subject, expired: list[ConsentState],
                  locale: str) -> OutboxMessage | None:
    """Queue the email telling a person that consents ended with their validity, and how to
    give them again (a new signup, confirmed as the first one was). None for an erased address.
    """
    if not subject.email:
        return None
    locale = _locale_for(locale, campaign)
    with force_locale(locale):
        title = gettext("Your consents to %(campaign)s have ended", campaign=campaign.name)
        text, html = _render(
            "renewal", locale=locale, campaign=campaign, preview=title,
            expired=[notices.item_label(campaign, s.purpose, s.network) for s in expired],
            widget_url=urls.widget_url(campaign), manage_url=urls.manage_url(campaign, subject))
    message = _compose(campaign, subject.email, locale, title, text, html)
    return _enqueue(session, campaign, message)


# --- transports ------------------------------------------------------------------------------

class Transport(Protocol):
    """Anything that delivers one serialised message to one recipient."""

    def send(self, recipient: str, message_bytes: bytes) -> None:
        """Deliver or raise; raise ``outbox.PermanentFailure`` when retrying cannot help."""

def _message_id(message_bytes: bytes) -> str | None:
    return BytesHeaderParser(policy=email.policy.SMTP).parsebytes(message_bytes)["Message-ID"]


@dataclass(frozen=True)
class FileTransport:
    """Writes each message to ``directory/<Message-ID>.eml``; for development and tests."""

    directory: str

    def send(self, recipient: str, message_bytes: bytes) -> None:
        """Write the message once: a retry of the same message finds its file and stops.

        The file appears complete or not at all (written aside, then renamed), so a reader
        polling the directory never sees half a message. The recipient is in the ``To`` header.
        """
        message_id = _message_id(message_bytes)
        if message_id:
            name = re.sub(r"[^A-Za-z0-9.@_-]", "_", message_id.strip().strip("<>"))[:200]
        else:
            name = hashlib.sha256(message_bytes).hexdigest()
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, name + ".eml")
        if os.path.exists(path):
            return
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(message_bytes)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise


@dataclass(frozen=True)
class SMTPTransport:
    """Sends each message over its own SMTP connection, with TLS and AUTH as configured.

    One connection per message keeps failures independent: these are transactional emails sent
    as people sign up, not bulk mail, and a long-lived connection would need its own liveness
    handling.
    """

    host: str
    port: int
    security: str = "plain"  # "plain", "starttls" or "ssl"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    timeout: float = 30.0

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    def send(self, recipient: str, message_bytes: bytes) -> None:
        """Deliver the message to ``recipient``; the envelope sender is the ``From`` address.

        Raises :class:`~consent_widget.outbox.PermanentFailure` when the server refuses the
        recipient with a 5xx reply, and any other exception for a failure worth retrying.
        """
        headers = BytesHeaderParser(policy=email.policy.SMTP).parsebytes(message_bytes)
        sender = headers["From"].addresses[0].addr_spec
        if self.security == "ssl":
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                          context=self._tls_context())
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                connection.starttls(context=self._tls_context())
            if self.username:
                connection.login(self.username, self.password or "")
            options = () if (sender + recipient).isascii() else ("SMTPUTF8",)
            try:
                connection.sendmail(sender, [recipient], message_bytes, mail_options=options)
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients.get(recipient, (0, b""))
                if 500 <= code < 600:
                    raise outbox.PermanentFailure(
                        f"recipient refused: {code} {reply.decode('utf-8', 'replace')}") from None
                raise
        finally:
            # Once the message is accepted, a failed QUIT must not make the outbox send it again.
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()


_SMTP_OPTIONS = {"starttls", "ssl", "cafile", "timeout"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _flag(options: dict[str, str], name: str) -> bool:
    value = options.get(name, "0").lower()
    if value not in _TRUE | _FALSE:
        raise ValueError(f"MAIL_URL option {name}={value!r} must be 1 or 0")
    return value in _TRUE


def _smtp_transport(parts) -> SMTPTransport:
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - _SMTP_OPTIONS
    if unknown:
        # A misspelt "starttls" would otherwise send credentials and mail in clear text.
        raise ValueError(f"unknown MAIL_URL option(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(_SMTP_OPTIONS))}")
    options = {name: values[-1] for name, values in query.items()}
    starttls, implicit_tls = _flag(options, "starttls"), _flag(options, "ssl")
    if starttls and implicit_tls:
        raise ValueError("MAIL_URL may ask for starttls=1 or ssl=1, not both")
    if not parts.hostname:
        raise ValueError("MAIL_URL smtp:// needs a host, as in smtp://user:pass@host:587")
    try:
        port = parts.port
        timeout = float(options.get("timeout", 30))
    except ValueError:
        raise ValueError("MAIL_URL has an invalid port or timeout") from None
    security = "ssl" if implicit_tls else "starttls" if starttls else "plain"
    default_port = {"ssl": 465, "starttls": 587, "plain": 25}[security]
    return SMTPTransport(
        host=parts.hostname, port=port or default_port, security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        cafile=options.get("cafile") or None, timeout=timeout)


def transport_from_url(url: str) -> Transport:
    """The transport ``MAIL_URL`` names: :class:`SMTPTransport` or :class:`FileTransport`.

    Only parses; connects to nothing. Raises ValueError, never quoting the URL's password.
    """
    parts = urlsplit(url or "")
    if parts.scheme == "smtp":
        return _smtp_transport(parts)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError("MAIL_URL file:// needs an absolute directory, as in "
                             "file:///var/spool/consent-widget (three slashes)")
        return FileTransport(directory=unquote(parts.path))
    raise ValueError(f"unsupported MAIL_URL scheme {parts.scheme!r}: use "
                     "smtp://user:pass@host:port (?starttls=1 or ?ssl=1) or file:///path/to/dir")
