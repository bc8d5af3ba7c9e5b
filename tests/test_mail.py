"""Emails to supporters (language, links, headers, RFC 8058) and the SMTP and file transports.

The French emails come from the project's own catalogue (compiled by the ``app_config``
fixture); ``test_i18n.py`` checks that every string of the project is translated.
"""
from __future__ import annotations

import email
import email.policy
import ipaddress
import os
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from uuid import uuid4

import pytest
from babel.messages.extract import extract_from_file
from sqlalchemy import select

from consent_widget import create_app, db, ledger, mail, notices, outbox, tokens
from consent_widget.campaigns import by_slug, create_campaign
from consent_widget.models import GIVEN, WITHDRAWN, OutboxMessage, Receipt, Subject, utcnow

ROOT = Path(__file__).resolve().parent.parent
EMAIL_TEMPLATES = ROOT / "consent_widget" / "templates" / "email"


def email_msgids() -> set:
    """Every string of the email templates and of mail.py, as pybabel extracts them."""
    found = set()
    for template in sorted(EMAIL_TEMPLATES.iterdir()):
        for _, msgid, _, _ in extract_from_file("jinja2.ext:babel_extract", str(template)):
            found.add(msgid)
    for _, msgid, _, _ in extract_from_file("python", str(ROOT / "consent_widget" / "mail.py")):
        found.add(msgid)
    return found


def sign_up(app, *, locale="en", ticked=("newsletter:", "social_matching:facebook"),
            address="ana@example.test", slug="demo") -> dict:
    """Record a widget signup, which queues its confirmation email; return its ids."""
    with app.app_context():
        with db.transaction() as session:
            campaign = by_slug(session, slug)
            choices = [ledger.Choice(purpose, network,
                                     notices.current_notice(session, campaign, purpose, network,
                                                            locale),
                                     f"{purpose}:{network}" in ticked)
                       for purpose, network in notices.offered_items(campaign)]
            signup = ledger.record_signup(session, campaign, address, choices, key=b"test-key",
                                          locale=locale)
            return {"signup": signup.public_id, "subject": signup.subject.public_id,
                    "subject_pk": signup.subject_id}


def give(app, subject_pk: int, *items: str, event=GIVEN) -> None:
    """Append ``event`` (given by default) for each "purpose:network" item."""
    with app.app_context():
        with db.transaction() as session:
            campaign = by_slug(session, "demo")
            subject = session.get(Subject, subject_pk)
            for item in items:
                purpose, _, network = item.partition(":")
                ledger.append(session, campaign, subject, purpose, network, event,
                              method="test", now=utcnow())


def queue_receipt(app, subject_pk: int, *, locale="en", receipt=None):
    """Queue the receipt email of a subject; return what queue_receipt returned."""
    with app.app_context():
        with db.transaction() as session:
            return mail.queue_receipt(session, by_slug(session, "demo"),
                                      session.get(Subject, subject_pk), receipt, locale)


def queued(app) -> list[email.message.EmailMessage]:
    """The emails in the outbox as the worker will send them, parsed, oldest first."""
    with app.app_context():
        payloads = db.session().scalars(select(OutboxMessage.payload)
                                        .order_by(OutboxMessage.id)).all()
        return [email.message_from_bytes(mail.message_bytes(p), policy=email.policy.default)
                for p in payloads]


def parts(message) -> tuple[str, str]:
    """The text and HTML bodies of an email."""
    return (message.get_body(("plain",)).get_content(),
            message.get_body(("html",)).get_content())


def link_token(body: str, kind: str) -> str:
    """The token of the first ``/w/demo/<kind>/<token>`` link in a body."""
    return re.search(rf"http://consent\.test/w/demo/{kind}/([\w.-]+)", body).group(1)


# --- the confirmation email -------------------------------------------------------------------

def test_confirmation_email_is_written_in_the_signup_language(app, campaign):
    sign_up(app, locale="en", address="ana@example.test")
    sign_up(app, locale="fr", address="bea@example.test")
    english, french = queued(app)
    assert english["Subject"] == "Confirm your email address for Marie 2027"
    assert french["Subject"] == "Confirmez votre adresse e-mail pour Marie 2027"
    assert (english["Content-Language"], french["Content-Language"]) == ("en", "fr")
    for message, sentence in [(english, "Nothing counts as your consent until you confirm."),
                              (french, "Rien ne vaut consentement tant que vous n’avez pas")]:
        text, html = parts(message)
        assert sentence in text
        assert sentence in html
    assert '<html lang="fr">' in parts(french)[1]


def test_french_email_has_no_english_left(app, campaign):
    sign_up(app, locale="fr", ticked=("newsletter:",))
    [message] = queued(app)
    text, html = parts(message)
    for msgid in email_msgids():
        english = msgid[0] if isinstance(msgid, tuple) else msgid
        longest = max(re.split(r"%\(\w+\)[sd]", english), key=len).strip()
        assert longest not in text and longest not in html, longest


def test_confirmation_email_carries_the_confirm_and_manage_links_in_both_parts(app, campaign):
    ids = sign_up(app)
    [message] = queued(app)
    with app.app_context():
        for body in parts(message):
            assert tokens.loads(tokens.CONFIRM, link_token(body, "confirm"))["s"] == ids["signup"]
            assert tokens.loads(tokens.MANAGE, link_token(body, "manage"))["sub"] == ids["subject"]
    html = parts(message)[1]
    assert re.search(r'href="http://consent\.test/w/demo/confirm/[\w.-]+"', html)
    assert re.search(r'href="http://consent\.test/w/demo/manage/[\w.-]+"', html)


def test_confirmation_subject_and_preview_name_only_the_campaign(app, campaign):
    sign_up(app, ticked=("newsletter:", "social_matching:facebook", "social_matching:linkedin"))
    [message] = queued(app)
    text, html = parts(message)
    assert message["Subject"] == "Confirm your email address for Marie 2027"
    assert text.splitlines()[0] == message["Subject"]
    preheader = re.search(r'<body[^>]*>\s*<div style="display:none[^>]*>([^<]*)</div>', html)
    assert preheader.group(1) == message["Subject"]


def test_confirmation_lists_what_was_ticked_and_what_was_not(app, campaign):
    sign_up(app, ticked=("newsletter:", "social_matching:facebook"))
    text, html = parts(queued(app)[0])
    asked, _, rest = text.partition("You asked for:")[2].partition("You did not ask for:")
    assert "The newsletter of Marie 2027 by email" in asked
    assert "your public Facebook profile" in asked
    assert "LinkedIn" not in asked
    assert "your public LinkedIn profile" in rest.split("Nothing counts")[0]
    assert "<li>Matching your email address with your public LinkedIn profile</li>" in html


def test_confirmation_with_no_box_ticked_says_so(app, campaign):
    sign_up(app, ticked=())
    text, _ = parts(queued(app)[0])
    assert "You ticked no box." in text
    assert "You asked for:" not in text


def test_campaign_name_is_escaped_in_html_and_kept_on_one_line_in_the_subject(app):
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "tom", name="Tom & <Jerry>\n2027", controller="Tom",
                            contact_email="dpo@tom.test", policy_url="https://tom.test/privacy")
    sign_up(app, slug="tom")
    message = queued(app)[0]
    assert message["Subject"] == "Confirm your email address for Tom & <Jerry> 2027"
    assert "Tom &amp; &lt;Jerry&gt;" in parts(message)[1]
    assert "<Jerry>" not in parts(message)[1]


def test_every_email_carries_the_headers_of_an_automatic_message(app, campaign):
    ids = sign_up(app)
    give(app, ids["subject_pk"], "newsletter:")
    queue_receipt(app, ids["subject_pk"])
    before = datetime.now(timezone.utc) - timedelta(minutes=1)
    for message in queued(app):
        assert message["From"] == "Consent <no-reply@consent.test>"
        assert message["To"] == "ana@example.test"
        assert message["Reply-To"] == "dpo@marie2027.test"
        assert re.fullmatch(r"<[^<>@\s]+@consent\.test>", message["Message-ID"])
        assert before < parsedate_to_datetime(message["Date"]) <= datetime.now(timezone.utc)
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Content-Language"] == "en"
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == [
            "text/plain", "text/html"]
        for body in parts(message):
            assert "http://consent.test/w/demo/manage/" in body
    assert len({message["Message-ID"] for message in queued(app)}) == 2


# --- the receipt email ------------------------------------------------------------------------

def test_receipt_email_has_one_click_unsubscribe_while_the_newsletter_is_given(app, campaign):
    ids = sign_up(app)
    give(app, ids["subject_pk"], "newsletter:")
    queue_receipt(app, ids["subject_pk"])
    message = queued(app)[-1]
    unsubscribe = re.fullmatch(r"<(http://consent\.test/w/demo/unsubscribe/([\w.-]+))>",
                               message["List-Unsubscribe"])
    with app.app_context():
        assert tokens.loads(tokens.UNSUBSCRIBE, unsubscribe.group(2))["sub"] == ids["subject"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_unsubscribe_header_travels_as_a_plain_url_not_encoded_words(app, campaign):
    # Mail providers read the raw header: RFC 2369 allows no encoded words in it.
    ids = sign_up(app)
    give(app, ids["subject_pk"], "newsletter:")
    queue_receipt(app, ids["subject_pk"])
    with app.app_context():
        raw = mail.message_bytes(db.session().scalars(select(OutboxMessage.payload)
                                                      .order_by(OutboxMessage.id.desc())).first())
    header = next(line for line in raw.decode().splitlines()
                  if line.startswith("List-Unsubscribe:"))
    assert re.fullmatch(r"List-Unsubscribe: <http://consent\.test/w/demo/unsubscribe/[\w.-]+>",
                        header)


def test_receipt_email_has_no_unsubscribe_header_without_the_newsletter(app, campaign):
    ids = sign_up(app)
    give(app, ids["subject_pk"], "social_matching:facebook")
    queue_receipt(app, ids["subject_pk"])
    confirmation, receipt = queued(app)
    for message in (confirmation, receipt):
        assert message["List-Unsubscribe"] is None
        assert message["List-Unsubscribe-Post"] is None


def test_receipt_email_has_no_unsubscribe_header_once_the_newsletter_is_withdrawn(app, campaign):
    ids = sign_up(app)
    give(app, ids["subject_pk"], "newsletter:")
    give(app, ids["subject_pk"], "newsletter:", event=WITHDRAWN)
    queue_receipt(app, ids["subject_pk"])
    assert queued(app)[-1]["List-Unsubscribe"] is None


def test_receipt_email_says_what_is_given_and_names_the_receipt(app, campaign):
    ids = sign_up(app)
    give(app, ids["subject_pk"], "newsletter:", "social_matching:facebook")
    give(app, ids["subject_pk"], "social_matching:facebook", event=WITHDRAWN)
    receipt = Receipt(id=str(uuid4()), issued_at=datetime(2027, 3, 1, 9, 30, tzinfo=timezone.utc),
                      jws="e30.e30.c2ln")
    queue_receipt(app, ids["subject_pk"], receipt=receipt)
    message = queued(app)[-1]
    text, html = parts(message)
    assert message["Subject"] == "Your consent choices for Marie 2027"
    allowed, _, refused = text.partition("You allow:")[2].partition("You do not allow:")
    assert "The newsletter of Marie 2027 by email" in allowed
    assert "Facebook" in refused and "LinkedIn" in refused
    for body in (text, html):
        assert receipt.id in body
        assert re.search(r"2027, 9:30:00\sAM \(UTC\)", body.split(receipt.id)[1])
        with app.app_context():
            assert tokens.loads(tokens.MANAGE, link_token(body, "manage"))["sub"] == ids["subject"]
    assert "See my receipt" in html


def test_receipt_email_after_a_confirmation_that_changed_nothing(app, campaign):
    ids = sign_up(app)
    queue_receipt(app, ids["subject_pk"], receipt=None)
    text, _ = parts(queued(app)[-1])
    assert "nothing changed" in text
    assert "You allow nothing" in text
    assert "Receipt " not in text


def test_receipt_email_in_french(app, campaign):
    ids = sign_up(app, locale="fr")
    give(app, ids["subject_pk"], "newsletter:")
    queue_receipt(app, ids["subject_pk"], locale="fr",
                  receipt=Receipt(id=str(uuid4()), issued_at=utcnow(), jws="e30.e30.c2ln"))
    message = queued(app)[-1]
    assert message["Subject"] == "Vos choix de consentement pour Marie 2027"
    assert "Vous autorisez\u00a0:" in parts(message)[0]
    assert message["Content-Language"] == "fr"


def test_no_receipt_email_for_an_erased_address(app, campaign):
    ids = sign_up(app)
    with app.app_context():
        with db.transaction() as session:
            session.get(Subject, ids["subject_pk"]).email = None
    assert queue_receipt(app, ids["subject_pk"]) is None
    assert len(queued(app)) == 1


def test_newsletter_headers_follow_rfc_8058(app, campaign):
    ids = sign_up(app)
    with app.app_context():
        session = db.session()
        headers = mail.newsletter_headers(by_slug(session, "demo"),
                                          session.get(Subject, ids["subject_pk"]))
    assert set(headers) == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    assert re.fullmatch(r"<http://consent\.test/w/demo/unsubscribe/[\w.-]+>",
                        headers["List-Unsubscribe"])
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_queued_email_is_not_committed_by_mail(app, campaign):
    with app.app_context():
        with pytest.raises(RuntimeError):
            with db.transaction() as session:
                demo = by_slug(session, "demo")
                choices = [ledger.Choice("newsletter", "",
                                         notices.current_notice(session, demo, "newsletter", "",
                                                                "en"), True)]
                ledger.record_signup(session, demo, "ana@example.test", choices, key=b"k",
                                     locale="en")
                raise RuntimeError("the signup failed after the email was queued")
    assert queued(app) == []


# --- SMTP transport ---------------------------------------------------------------------------

def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost, its own CA; return (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "consent_widget test SMTP")])
    now = datetime.now(timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.fixture
def server_tls(tmp_path):
    """(server TLS context, CA file the client must trust)."""
    import ssl
    cert_file, key_file = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def outbox_rows(app) -> list[OutboxMessage]:
    """Every outbox row, freshly read."""
    with app.app_context():
        return db.session().scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def test_smtp_transport_delivers_the_confirmation_email(app, campaign, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    sign_up(app)
    [stored] = queued(app)
    assert outbox.deliver_due(app)["sent"] == 1
    [received] = smtp_server.messages
    [envelope] = smtp_server.envelopes
    assert envelope.mail_from == "no-reply@consent.test"
    assert envelope.rcpt_tos == ["ana@example.test"]
    assert received["Message-ID"] == stored["Message-ID"]
    assert received["Subject"] == "Confirm your email address for Marie 2027"
    assert parts(received) == parts(stored)


def test_an_address_with_a_non_ascii_local_part_travels_as_smtputf8(app, campaign,
                                                                     smtp_server_factory):
    server = smtp_server_factory(enable_SMTPUTF8=True)
    app.config["MAIL_URL"] = server.url
    sign_up(app, address="anaïs@example.test")
    assert outbox.deliver_due(app)["sent"] == 1
    assert server.envelopes[0].rcpt_tos == ["anaïs@example.test"]
    assert server.messages[0]["To"] == "anaïs@example.test"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_credentials_in_the_url_are_percent_decoded_and_used(app, campaign,
                                                                  smtp_server_factory):
    server = smtp_server_factory(users={"ana@relay.test": "p@ss:w/rd%"})
    app.config["MAIL_URL"] = (f"smtp://ana%40relay.test:p%40ss%3Aw%2Frd%25"
                              f"@127.0.0.1:{server.port}")
    sign_up(app)
    assert outbox.deliver_due(app)["sent"] == 1
    assert server.logins == [("ana@relay.test", True)]
    assert len(server.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_rejected_smtp_password_is_retried_and_never_recorded(app, campaign,
                                                               smtp_server_factory):
    server = smtp_server_factory(users={"ana": "right"})
    app.config["MAIL_URL"] = f"smtp://ana:s3cret-wrong@127.0.0.1:{server.port}"
    sign_up(app)
    assert outbox.deliver_due(app) == {"sent": 0, "retried": 1, "dead": 0}
    [row] = outbox_rows(app)
    assert "SMTPAuthenticationError" in row.last_error
    assert "s3cret-wrong" not in row.last_error
    assert server.messages == []


def test_starttls_with_a_trusted_ca_file(app, campaign, smtp_server_factory, server_tls):
    context, ca_file = server_tls
    server = smtp_server_factory(tls_context=context, require_starttls=True)
    app.config["MAIL_URL"] = f"smtp://127.0.0.1:{server.port}?starttls=1&cafile={ca_file}"
    sign_up(app)
    assert outbox.deliver_due(app)["sent"] == 1
    assert len(server.messages) == 1


def test_starttls_refuses_a_certificate_it_cannot_verify(app, campaign, smtp_server_factory,
                                                         server_tls):
    context, _ = server_tls
    server = smtp_server_factory(tls_context=context, require_starttls=True)
    app.config["MAIL_URL"] = f"smtp://127.0.0.1:{server.port}?starttls=1"
    sign_up(app)
    assert outbox.deliver_due(app)["retried"] == 1
    assert "CERTIFICATE_VERIFY_FAILED" in outbox_rows(app)[0].last_error
    assert server.messages == []


def test_implicit_tls(app, campaign, smtp_server_factory, server_tls):
    context, ca_file = server_tls
    server = smtp_server_factory(ssl_context=context)
    app.config["MAIL_URL"] = f"smtp://127.0.0.1:{server.port}?ssl=1&cafile={ca_file}"
    sign_up(app)
    assert outbox.deliver_due(app)["sent"] == 1
    assert len(server.messages) == 1


def test_smtp_url_is_parsed_with_defaults_and_no_password_in_repr():
    transport = mail.transport_from_url("smtp://u%40x.test:p%2Fw@mail.test?starttls=1")
    assert (transport.host, transport.port, transport.security) == ("mail.test", 587, "starttls")
    assert (transport.username, transport.password) == ("u@x.test", "p/w")
    assert "p/w" not in repr(transport)
    assert mail.transport_from_url("smtp://mail.test?ssl=1").port == 465
    assert mail.transport_from_url("smtp://mail.test").port == 25
    assert mail.transport_from_url("smtp://mail.test:2525?timeout=5").timeout == 5.0


@pytest.mark.parametrize("url, message", [
    ("ftp://mail.test", "unsupported MAIL_URL scheme 'ftp'"),
    ("mail.test:25", "unsupported MAIL_URL scheme"),
    ("smtp://u:secret@mail.test?tls=1", "unknown MAIL_URL option"),
    ("smtp://mail.test?starttls=1&ssl=1", "not both"),
    ("smtp://mail.test?starttls=maybe", "must be 1 or 0"),
    ("smtp://:25", "needs a host"),
    ("file://relative/dir", "absolute directory"),
])
def test_bad_mail_url_is_a_clear_value_error(url, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        mail.transport_from_url(url)
    assert "secret" not in str(raised.value)


def test_app_refuses_to_start_with_an_unsupported_mail_url(app_config):
    with pytest.raises(ValueError, match="unsupported MAIL_URL scheme 'http'"):
        create_app({**app_config, "MAIL_URL": "http://mail.test"})


# --- file transport ---------------------------------------------------------------------------

def test_file_transport_writes_one_parseable_eml_per_message(app, campaign, tmp_path):
    sign_up(app, address="ana@example.test")
    sign_up(app, address="bea@example.test")
    assert outbox.deliver_due(app)["sent"] == 2
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]
    written = {email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Message-ID"]
               for f in files}
    assert written == {message["Message-ID"] for message in queued(app)}
    assert {f.name for f in files} == {m.strip("<>") + ".eml" for m in written}


def test_a_retried_message_does_not_create_a_second_file(app, campaign, tmp_path):
    sign_up(app)
    [row] = outbox_rows(app)
    with app.app_context():
        sent = mail.message_bytes(row.payload)
    # The worker wrote the file, then died before recording it as sent ...
    mail.transport_from_url(app.config["MAIL_URL"]).send(row.recipient, sent)
    # ... so the message is sent again, composed again to the very same bytes.
    assert outbox.deliver_due(app)["sent"] == 1
    files = list((tmp_path / "outbox").iterdir())
    assert len(files) == 1
    assert files[0].read_bytes() == sent
    assert not [name for name in os.listdir(tmp_path / "outbox") if name.endswith(".tmp")]
