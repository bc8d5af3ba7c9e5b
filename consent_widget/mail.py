"""Emails to supporters, in their language, and the transports that carry them.

An email is queued in the outbox in the transaction of its event, as the facts it tells (what
was ticked, what is given, the links, the receipt) together with its ``Date`` and
``Message-ID``; the worker writes the message from them when it sends it (:func:`message_bytes`).
Composing a MIME message costs more than the rest of a signup, so it stays off the request
path; and since every value is fixed when the email is queued, a retry sends the very same
bytes. Every email carries the manage link, so withdrawing is one click from any of them.

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
import json
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid, parseaddr
from functools import lru_cache
from types import SimpleNamespace
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app
from flask_babel import force_locale, format_datetime as format_local_datetime, gettext, ngettext
from sqlalchemy.orm import Session

from . import notices, outbox, urls
from .state import effective_status, states_of
from .models import GIVEN, NEWSLETTER, ConsentState, OutboxMessage, utcnow

KIND = "email"
#: The campaign's details an email shows, copied into the queued email.
_CAMPAIGN_FIELDS = ("name", "controller", "controller_address", "contact_email", "locale",
                    "validity_days")


# --- queueing --------------------------------------------------------------------------------

def _locale_for(locale: str | None, campaign) -> str:
    if locale in notices.LOCALES:
        return locale
    return campaign.locale if campaign.locale in notices.LOCALES else notices.LOCALES[0]


@lru_cache(maxsize=8)
def _sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class Email:
    """An email ready to be queued: the recipient and the facts the worker writes it from."""

    campaign_id: int
    to: str
    payload: str

    def queue(self, session: Session) -> OutboxMessage:
        """Queue it in the caller's transaction."""
        return outbox.enqueue(session, kind=KIND, recipient=self.to, campaign_id=self.campaign_id,
                              payload=self.payload)


def _email(campaign, to: str, template: str, locale: str, **facts) -> Email:
    """An email of ``templates/email/<template>`` to ``to`` with the facts it tells."""
    sender = current_app.config["MAIL_FROM"]
    spec = {"template": template, "to": to, "from": sender, "locale": locale,
            "date": format_datetime(utcnow()),
            "message_id": make_msgid(domain=_sender_domain(sender)),
            "campaign": {name: getattr(campaign, name) for name in _CAMPAIGN_FIELDS}, **facts}
    return Email(campaign.id, to, json.dumps(spec, separators=(",", ":"), ensure_ascii=False))


def _enqueue(session: Session, campaign, to: str, template: str, locale: str,
             **facts) -> OutboxMessage:
    """Queue an email of ``templates/email/<template>`` to ``to`` with the facts it tells."""
    return _email(campaign, to, template, locale, **facts).queue(session)


def _items(pairs) -> list[list[str]]:
    return [[purpose, network] for purpose, network in pairs]


def queue_confirmation(session: Session, campaign, subject, signup,
                       texts: dict[str, str] | None = None) -> OutboxMessage:
    """Queue the double opt-in email of ``signup`` in its language, listing what was ticked
    with ``texts``, the words shown for each ticked ``"purpose:network"``.

    Its subject line and preview name the campaign and nothing else: an inbox preview must not
    tell a passer-by which political causes the person supports.
    """
    return confirmation_email(campaign, subject, signup, texts).queue(session)


def confirmation_email(campaign, subject, signup, texts: dict[str, str] | None = None) -> Email:
    """The email :func:`queue_confirmation` queues, not queued yet."""
    items = [(item.partition(":"), ticked) for item, ticked in signup.choices.items()]
    return _email(
        campaign, subject.email, "confirmation", _locale_for(signup.locale, campaign),
        ticked=_items((purpose, network) for (purpose, _, network), ticked in items if ticked),
        unticked=_items((purpose, network) for (purpose, _, network), ticked in items
                        if not ticked),
        # The words the person agreed to, so the email they confirm from says what they confirm.
        texts={item: text for item, text in (texts or {}).items() if signup.choices.get(item)},
        confirm_url=urls.confirm_url(campaign, signup),
        manage_url=urls.manage_url(campaign, subject),
        days=max(1, int(current_app.config["CONFIRM_MAX_AGE"]) // 86400))


def _is_given(state: ConsentState, now) -> bool:
    return effective_status(state, now) == GIVEN


def newsletter_headers(campaign, subject) -> dict[str, str]:
    """The RFC 8058 one-click unsubscribe headers for an email to a newsletter subscriber."""
    return {"List-Unsubscribe": f"<{urls.unsubscribe_url(campaign, subject)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def queue_receipt(session: Session, campaign, subject, receipt, locale: str,
                  states: list[ConsentState] | None = None) -> OutboxMessage | None:
    """Queue the email sent after a confirmation or withdrawal: what is given now, what is not,
    the receipt's id (``receipt`` is None when nothing changed) and the manage link.

    ``states`` are the subject's current states when the caller has them at hand (read
    otherwise). Returns None for a subject whose address was erased: there is no one to write to.
    """
    if not subject.email:
        return None
    if states is None:
        states = states_of(session, campaign, subject)
    return receipt_email(campaign, subject, receipt, locale, states).queue(session)


def receipt_email(campaign, subject, receipt, locale: str, states: list[ConsentState]) -> Email:
    """The email :func:`queue_receipt` queues, for a subject with an address, not queued yet."""
    now = utcnow()
    given = [s for s in states if _is_given(s, now)]
    newsletter_given = any(s.purpose == NEWSLETTER for s in given)
    return _email(
        campaign, subject.email, "receipt", _locale_for(locale, campaign),
        changed=receipt is not None,
        receipt_id=receipt.id if receipt is not None else None,
        issued_at=receipt.issued_at.isoformat() if receipt is not None else None,
        jws=receipt.jws if receipt is not None else None,
        given=_items((s.purpose, s.network) for s in given),
        not_given=_items((s.purpose, s.network) for s in states if not _is_given(s, now)),
        manage_url=urls.manage_url(campaign, subject),
        headers=newsletter_headers(campaign, subject) if newsletter_given else {})


def queue_renewal(session: Session, campaign, subject, expired: list[ConsentState],
                  locale: str) -> OutboxMessage | None:
    """Queue the email telling a person that consents ended with their validity, and how to
    give them again (a new signup, confirmed as the first one was). None for an erased address.
    """
    if not subject.email:
        return None
    return _enqueue(session, campaign, subject.email, "renewal", _locale_for(locale, campaign),
                    expired=_items((s.purpose, s.network) for s in expired),
                    widget_url=urls.widget_url(campaign),
                    manage_url=urls.manage_url(campaign, subject))


def queue_manage_link(session: Session, campaign, subject, locale: str) -> OutboxMessage | None:
    """Queue an email with the person's manage link, sent again at their request (the campaign's
    team answers it from the console). None for an erased address."""
    if not subject.email:
        return None
    return _enqueue(session, campaign, subject.email, "manage_link", _locale_for(locale, campaign),
                    manage_url=urls.manage_url(campaign, subject))


# --- composing -------------------------------------------------------------------------------

def _one_line(text: str) -> str:
    # A header may not contain a line break; a campaign name pasted with one must not break it.
    return " ".join(text.split())


def _render(name: str, **context) -> tuple[str, str]:
    """The text and HTML parts of ``templates/email/<name>``.

    Rendered from the Jinja environment directly, not ``render_template``: emails are rendered
    by the worker, where request-bound context processors cannot run.
    """
    env = current_app.jinja_env
    return (env.get_template(f"email/{name}.txt").render(**context),
            env.get_template(f"email/{name}.html").render(**context))


def _labels(campaign, items) -> list[str]:
    return [notices.item_label(campaign, purpose, network) for purpose, network in items]


def _confirmation(spec: dict, campaign) -> tuple[str, dict]:
    title = gettext("Confirm your email address for %(campaign)s", campaign=campaign.name)
    texts = spec.get("texts") or {}  # not in emails queued before the texts were added
    return title, {
        "ticked": [(label, texts.get(f"{purpose}:{network}", ""))
                   for label, (purpose, network) in zip(_labels(campaign, spec["ticked"]),
                                                        spec["ticked"])],
        "unticked": _labels(campaign, spec["unticked"]),
        "confirm_url": spec["confirm_url"],
        "validity": ngettext("This link works for %(num)d day.",
                             "This link works for %(num)d days.", spec["days"])}


def _receipt(spec: dict, campaign) -> tuple[str, dict]:
    title = gettext("Your consent choices for %(campaign)s", campaign=campaign.name)
    issued_at = spec["issued_at"]
    return title, {
        "changed": spec["changed"], "receipt_id": spec["receipt_id"],
        "issued_at": (format_local_datetime(datetime.fromisoformat(issued_at), rebase=False)
                      if issued_at else None),
        "given": _labels(campaign, spec["given"]),
        "not_given": _labels(campaign, spec["not_given"])}


def _renewal(spec: dict, campaign) -> tuple[str, dict]:
    title = gettext("Your consents to %(campaign)s have ended", campaign=campaign.name)
    return title, {"expired": _labels(campaign, spec["expired"]),
                   "widget_url": spec["widget_url"]}


def _manage_link(spec: dict, campaign) -> tuple[str, dict]:
    return gettext("Your link to manage your choices for %(campaign)s", campaign=campaign.name), {}


def _console_invitation(spec: dict, campaign) -> tuple[str, dict]:
    title = gettext("You are invited to the consent console of %(campaign)s",
                    campaign=campaign.name)
    return title, {"url": spec["url"], "role": spec["role"], "invited_by": spec["invited_by"],
                   "days": spec["days"]}


def _console_password(spec: dict, campaign) -> tuple[str, dict]:
    return gettext("Choose your consent console password"), {"url": spec["url"],
                                                             "hours": spec["hours"]}


def _console_campaign_owner(spec: dict, campaign) -> tuple[str, dict]:
    title = gettext("You are the owner of %(campaign)s on the consent console",
                    campaign=campaign.name)
    return title, {"opened_by": spec["opened_by"], "login_url": spec["login_url"],
                   "set_password_url": spec.get("set_password_url"), "hours": spec["hours"]}


_TEMPLATES = {"confirmation": _confirmation, "receipt": _receipt, "renewal": _renewal,
              "manage_link": _manage_link,
              "console_invitation": _console_invitation, "console_password": _console_password}
_TEMPLATES["console_campaign_owner"] = _console_campaign_owner


def queue_console_email(session: Session, to: str, template: str, locale: str, *,
                        campaign=None, **facts) -> OutboxMessage:
    """Queue an email of the console (an invitation, a password link) to a team member.

    Such an email is about the person's account, not about a supporter's consent, so it has
    no manage link; ``campaign`` is the one it is about, if any.
    """
    sender = current_app.config["MAIL_FROM"]
    spec = {"template": template, "to": to, "from": sender,
            "locale": locale if locale in notices.LOCALES else notices.LOCALES[0],
            "date": format_datetime(utcnow()),
            "message_id": make_msgid(domain=_sender_domain(sender)),
            "campaign": ({name: getattr(campaign, name) for name in _CAMPAIGN_FIELDS}
                         if campaign is not None else None), **facts}
    return outbox.enqueue(session, kind=KIND, recipient=to,
                          campaign_id=campaign.id if campaign is not None else None,
                          payload=json.dumps(spec, separators=(",", ":"), ensure_ascii=False))


def _boundary(message_id: str, part: str) -> str:
    # Fixed by the Message-ID, so that composing again gives the same bytes. "=_" cannot occur
    # in a quoted-printable or base64 body, so the boundary never collides with the content.
    return f"=_{part}_{hashlib.sha256(message_id.encode('utf-8')).hexdigest()[:32]}"


def compose(spec: dict) -> EmailMessage:
    """The email a queued payload describes (see :func:`message_bytes`)."""
    campaign = SimpleNamespace(**spec["campaign"]) if spec.get("campaign") else None
    locale = spec["locale"]
    with force_locale(locale):
        title, context = _TEMPLATES[spec["template"]](spec, campaign)
        text, html = _render(spec["template"], locale=locale, campaign=campaign, preview=title,
                             manage_url=spec.get("manage_url"), **context)
    to = spec["to"]
    # An address with a non-ASCII local part can only travel as SMTPUTF8 (RFC 6531). Lines may
    # run to RFC 5322's 998 characters: folded at 78, a long List-Unsubscribe URL would be
    # rewritten into encoded words, which RFC 2369 forbids and mail providers then ignore.
    policy = (email.policy.SMTP if to.isascii() else email.policy.SMTPUTF8).clone(
        max_line_length=998)
    message = EmailMessage(policy=policy)
    message["From"] = spec["from"]
    message["To"] = to
    # Questions and "please delete me" replies should reach the controller, not a no-reply box.
    if campaign is not None:
        message["Reply-To"] = campaign.contact_email
    message["Subject"] = _one_line(title)
    message["Date"] = spec["date"]
    message["Message-ID"] = spec["message_id"]
    # RFC 3834: tells vacation responders and ticket systems not to answer.
    message["Auto-Submitted"] = "auto-generated"
    for name, value in spec.get("headers", {}).items():
        message[name] = value
    # Quoted-printable keeps every body line ASCII and short, whatever the header line length.
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    message.set_boundary(_boundary(spec["message_id"], "alt"))
    if spec.get("jws"):
        # The signed receipt itself, for the person to keep: any JOSE library verifies it.
        message.add_attachment(spec["jws"].encode("ascii"), maintype="application",
                               subtype="jwt", filename=f"consent-receipt-{spec['receipt_id']}.jwt")
        message.set_boundary(_boundary(spec["message_id"], "mixed"))
    # After the parts: set_content() and add_attachment() move Content-* headers into the parts.
    message["Content-Language"] = locale
    return message


def message_bytes(payload: str) -> bytes:
    """The bytes to send for an email's outbox payload.

    Needs an app context (templates, translations). A payload queued by an earlier release,
    which stored the whole message, is sent as it is.
    """
    if not payload.startswith("{"):
        return payload.encode("utf-8")
    return compose(json.loads(payload)).as_bytes()


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
