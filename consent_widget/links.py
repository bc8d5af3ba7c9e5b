"""The pages behind the links in emails: confirm, manage and withdraw, one-click unsubscribe.

Every link shows a page on GET and acts only on POST, because mail scanners follow GET links.
The token in the URL is the credential: it names the campaign and the state it acts on, so no
cookie or session is needed, and a superseded or foreign token is refused.
"""
from __future__ import annotations

from flask import Blueprint, abort, g, render_template, request
from flask_babel import get_locale
from sqlalchemy import bindparam, select
from sqlalchemy.orm.attributes import set_committed_value

from . import campaigns, db, ledger, lifecycle, loaded, notices, receipts, state, tokens, urls
from .models import NEWSLETTER, SOCIAL_MATCHING, Campaign, Receipt, Signup, Subject, utcnow

bp = Blueprint("links", __name__)


class LinkRefused(Exception):
    """The token cannot be used; ``reason`` is ``expired`` or ``invalid``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _campaign(slug: str):
    campaign = campaigns.by_slug(db.session(), slug)
    if campaign is None:
        abort(404)
    g.campaign_locale = campaign.locale
    return campaign


def _payload(purpose: str, token: str, campaign) -> dict:
    try:
        payload = tokens.loads(purpose, token)
    except tokens.TokenExpired:
        raise LinkRefused("expired") from None
    except tokens.TokenInvalid:
        raise LinkRefused("invalid") from None
    if payload.get("c") != campaign.id:
        raise LinkRefused("invalid")
    return payload


# With its subject, which the confirmation needs: one read instead of two.
_SIGNUP_BY_PUBLIC_ID = (select(Signup, Subject).join(Subject, Subject.id == Signup.subject_id)
                        .where(Signup.campaign_id == bindparam("campaign"),
                               Signup.public_id == bindparam("public_id")))


def _signup(campaign, token: str) -> Signup:
    payload = _payload(tokens.CONFIRM, token, campaign)
    found = db.session().execute(_SIGNUP_BY_PUBLIC_ID, {
        "campaign": campaign.id, "public_id": payload.get("s")}).first()
    if found is None:
        raise LinkRefused("invalid")
    signup, subject = found
    set_committed_value(signup, "subject", subject)
    return signup


#: The campaign of the URL with the signup and subject its token names, as plain columns: the
#: confirmation link's one read, rather than one for the campaign and another for the signup.
_CONFIRMATION_ROW = (select(*loaded.columns(Campaign, "campaign_"),
                            *loaded.columns(Signup, "signup_"),
                            *loaded.columns(Subject, "subject_"))
                     .join_from(Campaign, Signup, Signup.campaign_id == Campaign.id)
                     .join(Subject, Subject.id == Signup.subject_id)
                     .where(Campaign.slug == bindparam("slug"),
                            Campaign.id == bindparam("campaign"),
                            Signup.public_id == bindparam("public_id")))


def _confirmation_row(params: dict, reads=None):
    """The campaign, signup and subject of :data:`_CONFIRMATION_ROW`, or None: one read on
    ``reads`` (by default the context's reader, :func:`consent_widget.db.reader`, in no
    transaction), made into detached objects rather than through the session's ORM, which
    would cost more than the read. The confirmation reads the signup and its subject again
    under the ledger's lock."""
    rows = db.driver_rows(reads if reads is not None else db.reader(), _CONFIRMATION_ROW,
                          params)
    if not rows:
        return None
    values = rows[0]._asdict()
    return tuple(loaded.detached(model, values, prefix) for model, prefix in (
        (Campaign, "campaign_"), (Signup, "signup_"), (Subject, "subject_")))


def _confirmation(slug: str, token: str, reads=None) -> tuple[Campaign, Signup]:
    """The campaign of a confirmation link and the signup its token names, with its subject.

    The token is checked first, which needs no database, so that a good link (all but a few)
    costs one read; any other is answered by :func:`_campaign` and :func:`_signup` one after the
    other, as a 404 for an unknown campaign, a refusal naming the campaign otherwise.
    """
    try:
        payload = tokens.loads(tokens.CONFIRM, token)
    except (tokens.TokenExpired, tokens.TokenInvalid):
        payload = {}
    campaign_id, public_id = payload.get("c"), payload.get("s")
    if isinstance(campaign_id, int) and isinstance(public_id, str):
        found = _confirmation_row({"slug": slug, "campaign": campaign_id,
                                   "public_id": public_id}, reads)
        if found is not None:
            campaign, signup, subject = found
            g.link_campaign, g.campaign_locale = campaign, campaign.locale
            set_committed_value(signup, "subject", subject)
            return campaign, signup
    campaign = g.link_campaign = _campaign(slug)
    return campaign, _signup(campaign, token)


def _subject(purpose: str, campaign, token: str) -> Subject:
    payload = _payload(purpose, token, campaign)
    subject = ledger.subject_by_public_id(db.session(), campaign, str(payload.get("sub")))
    if subject is None or payload.get("v") != subject.link_version:
        raise LinkRefused("invalid")
    return subject


@bp.after_request
def _private_page(response):
    """Link pages show one person's choices: never cached, framed, or named in a Referer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'")
    return response


@bp.errorhandler(LinkRefused)
def _refused(exc: LinkRefused):
    # 410 Gone for a link that was good once, 404 for one that never was ours.
    status = 410 if exc.reason == "expired" else 404
    return render_template("links/refused.html", reason=exc.reason,
                           campaign=getattr(g, "link_campaign", None)), status


def _locale() -> str:
    return str(get_locale())


def _items(campaign, signup: Signup) -> list[dict]:
    items = []
    for item, ticked in signup.choices.items():
        purpose, _, network = item.partition(":")
        items.append({"purpose": purpose, "network": network, "ticked": ticked,
                      "label": notices.item_label(campaign, purpose, network)})
    return items


@bp.route("/w/<slug>/confirm/<token>", methods=["GET", "POST"])
def confirm(slug: str, token: str):
    """GET: show what will be confirmed. POST: confirm it (double opt-in) and show the receipt."""
    if request.method == "GET":
        with db.reading() as session:
            campaign, signup = _confirmation(slug, token)
            stage = ("confirmed" if signup.confirmed_at else
                     "superseded" if ledger.is_superseded(session, signup) else "pending")
            return render_template("links/confirm.html", campaign=campaign,
                                   items=_items(campaign, signup), state=stage, token=token)
    try:
        campaign, signup, receipt = _confirm(slug, token)
    except ledger.AlreadyConfirmed as refused:
        campaign, signup = refused.args
        return render_template("links/confirm.html", campaign=campaign, items=_items(campaign, signup),
                               state="confirmed", token=token)
    except ledger.SignupSuperseded as refused:
        campaign, signup = refused.args
        return render_template("links/confirm.html", campaign=campaign, items=_items(campaign, signup),
                               state="superseded", token=token), 409
    return render_template("links/confirmed.html", campaign=campaign, items=_items(campaign, signup),
                           receipt=receipts.decode(receipt) if receipt else None,
                           email=signup.subject.email,
                           manage_url=urls.manage_url(campaign, signup.subject))


def _confirm(slug: str, token: str) -> tuple[Campaign, Signup, Receipt | None]:
    """Confirm the signup a link names; return its campaign, the signup and the receipt.

    Raises ledger.AlreadyConfirmed or ledger.SignupSuperseded with the campaign and the
    signup as their arguments, for the page that says so.

    On SQLite, whose write lock is the whole database's, the receipt and the email are worked
    out before the lock is taken (``ledger.prepare_confirmation``), from reads on the thread's
    reader, and the lock is held only for the writes. On PostgreSQL the lock is the campaign's
    row, and every read is a round trip that costs more than what it saves under the lock: the
    link is read and confirmed in one transaction.
    """
    campaign = signup = None
    try:
        if db.locks_whole_database():
            with db.reading() as session:
                campaign, signup = _confirmation(slug, token)
                offered = ledger.offered_notices(session, campaign, signup)
                # Read on the reader too: in the usual case this block begins no transaction.
                prepared = ledger.prepare_confirmation(session, campaign, signup, offered,
                                                       reads=db.reader())
            with db.transaction() as session:
                return campaign, signup, ledger.confirm(session, campaign, signup,
                                                        offered=offered, prepared=prepared)
        with db.transaction() as session:
            campaign, signup = _confirmation(slug, token, reads=db.first_reads())
            return campaign, signup, ledger.confirm(session, campaign, signup)
    except (ledger.AlreadyConfirmed, ledger.SignupSuperseded) as refused:
        raise type(refused)(campaign, signup) from None


def _manage_context(campaign, subject: Subject) -> dict:
    session = db.session()
    now = utcnow()
    states = [{"purpose": s.purpose, "network": s.network,
               "label": notices.item_label(campaign, s.purpose, s.network),
               "status": state.effective_status(s, now), "given_at": s.given_at,
               "expires_at": s.expires_at}
              for s in state.states_of(session, campaign, subject)]
    rows = session.query(Receipt).filter_by(campaign_id=campaign.id, subject_id=subject.id) \
        .order_by(Receipt.issued_at.desc()).all()
    return {"campaign": campaign, "subject": subject, "states": states,
            "receipts": [receipts.decode(r) for r in rows],
            "any_given": any(s["status"] == "given" for s in states)}


def parse_withdrawal(value: str, campaign) -> tuple[str | None, str | None]:
    """Turn the manage form's ``withdraw`` value into (purpose, network); None means any."""
    if value == "all":
        return None, None
    if value == NEWSLETTER:
        return NEWSLETTER, ""
    if value == SOCIAL_MATCHING:
        return SOCIAL_MATCHING, None
    purpose, _, network = value.partition(":")
    if purpose == SOCIAL_MATCHING and network in campaign.networks:
        return SOCIAL_MATCHING, network
    abort(400)


@bp.route("/w/<slug>/manage/<token>", methods=["GET", "POST"])
def manage(slug: str, token: str):
    """GET: the subject's consents and receipts. POST: withdraw one network, a purpose, or all;
    or erase the person's data altogether: ``action=erase`` asks to confirm, and only
    ``action=erase-confirmed`` from that page erases (it cannot be undone)."""
    campaign = g.link_campaign = _campaign(slug)
    subject = _subject(tokens.MANAGE, campaign, token)
    done = None
    action = request.form.get("action") if request.method == "POST" else None
    if action == "erase":
        return render_template("links/erase_confirm.html", campaign=campaign, token=token)
    if action == "erase-confirmed":
        with db.transaction() as session:
            lifecycle.erase_subject(session, campaign, subject, method="manage_page_erasure")
        return render_template("links/erased.html", campaign=campaign)
    if request.method == "POST":
        value = request.form.get("withdraw", "")
        if len(value) > 64:
            abort(400)
        purpose, network = parse_withdrawal(value, campaign)
        with db.transaction() as session:
            receipt = ledger.withdraw(session, campaign, subject, purpose, network,
                                      method="manage_page", locale=_locale())
        done = "withdrawn" if receipt else "nothing"
    return render_template("links/manage.html", token=token, done=done,
                           **_manage_context(campaign, subject))


@bp.route("/w/<slug>/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(slug: str, token: str):
    """RFC 8058 one-click unsubscribe from the newsletter: GET shows a button, POST withdraws.

    The POST needs no cookie and no form token: mail providers send ``List-Unsubscribe=One-Click``
    on the person's behalf, and the signed URL is the credential.
    """
    campaign = g.link_campaign = _campaign(slug)
    subject = _subject(tokens.UNSUBSCRIBE, campaign, token)
    if request.method == "GET":
        return render_template("links/unsubscribe.html", campaign=campaign, token=token,
                               done=False)
    with db.transaction() as session:
        ledger.withdraw(session, campaign, subject, NEWSLETTER, "",
                        method="one_click_unsubscribe", locale=_locale(), notify=False)
    return render_template("links/unsubscribe.html", campaign=campaign, token=token, done=True)
