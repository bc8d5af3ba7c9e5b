"""Campaign set-up: validation of what a candidate's team enters, and the campaign record."""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import db, loaded, notices
from .emails import InvalidEmail, normalise
from .models import DEFAULT_NETWORKS, Campaign

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
KNOWN_NETWORKS = DEFAULT_NETWORKS


class InvalidCampaign(ValueError):
    """A campaign setting is not acceptable; the message says which and why."""


def _split(url: str, what: str):
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidCampaign(f"{what} {url!r} is not a valid URL") from None
    return parts


def origin_of(url: str) -> str:
    """The ``scheme://host[:port]`` origin of an http(s) URL; raise InvalidCampaign otherwise."""
    parts = _split(url, "origin")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidCampaign(f"{url!r} is not an http(s) origin")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidCampaign(f"{url!r} must be an origin only, like https://example.org")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{_host(parts.hostname, url)}{port}"


#: A host name as a browser serialises it in an origin: ASCII labels (an IDN as its A-label).
_LABEL = r"[a-z0-9_][a-z0-9_-]{0,62}"
_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def _host(hostname: str, url: str) -> str:
    """The host of an origin as browsers write it; anything else is refused, since origins go
    into the widget's CSP header, where a space, a comma or a semicolon would add sources or
    directives of the writer's choosing."""
    if ":" in hostname and "%" not in hostname:  # a zone id means nothing to another host
        try:
            # urlsplit drops an IPv6 address's brackets; an origin keeps them (RFC 3986).
            return f"[{ipaddress.IPv6Address(hostname).compressed}]"
        except ValueError:
            raise InvalidCampaign(f"{url!r} does not name a valid host") from None
    try:
        host = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidCampaign(f"{url!r} does not name a valid host") from None
    if not _HOST_RE.match(host):
        raise InvalidCampaign(f"{url!r} does not name a valid host")
    return host


def _http_url(url: str, what: str) -> str:
    parts = _split(url, what)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidCampaign(f"{what} must be an http(s) URL, not {url!r}")
    return url.strip()


def _checked(name: str, controller: str, contact_email: str, policy_url: str, origins,
             locale: str, networks, controller_address: str, validity_days: int) -> dict:
    """Every campaign field checked and normalised, as the columns to store; raise
    InvalidCampaign naming the first field that is not acceptable."""
    if not (name or "").strip() or not (controller or "").strip():
        raise InvalidCampaign("the name and the controller are required")
    if len(name.strip()) > 200 or len(controller.strip()) > 200 \
            or len((controller_address or "").strip()) > 500:
        raise InvalidCampaign("the name and the controller have at most 200 characters, "
                              "the address 500")
    try:
        contact = normalise(contact_email)
    except InvalidEmail as exc:
        raise InvalidCampaign(f"contact email: {exc}") from None
    if locale not in notices.LOCALES:
        raise InvalidCampaign(f"locale must be one of {', '.join(notices.LOCALES)}")
    networks = list(dict.fromkeys(networks or DEFAULT_NETWORKS))
    unknown = [n for n in networks if n not in KNOWN_NETWORKS]
    if unknown:
        raise InvalidCampaign(f"unknown network(s) {', '.join(unknown)}; "
                              f"known: {', '.join(KNOWN_NETWORKS)}")
    if not isinstance(validity_days, int) or not 1 <= validity_days <= 3650:
        raise InvalidCampaign("validity must be between 1 and 3650 days")
    if len(policy_url or "") > 2000:
        raise InvalidCampaign("the policy URL has at most 2000 characters")
    return {"name": name.strip(), "controller": controller.strip(),
            "controller_address": (controller_address or "").strip(), "contact_email": contact,
            "policy_url": _http_url(policy_url, "the policy URL"), "locale": locale,
            "networks": networks, "origins": list(dict.fromkeys(origin_of(o) for o in origins)),
            "validity_days": validity_days}


def _record_notices(session: Session, campaign: Campaign) -> None:
    """Record the version of every text the campaign's widget now shows (a new name,
    controller or network changes the catalogue's texts)."""
    for locale_ in notices.LOCALES:
        for purpose, network in notices.offered_items(campaign):
            notices.current_notice(session, campaign, purpose, network, locale_)


def create_campaign(session: Session, slug: str, *, name: str, controller: str,
                    contact_email: str, policy_url: str, origins=(), locale: str = "fr",
                    networks=(), controller_address: str = "", jurisdiction: str = "FR",
                    validity_days: int = 730) -> Campaign:
    """Create a campaign after checking every field; records the first version of its notices."""
    if not SLUG_RE.match(slug or ""):
        raise InvalidCampaign("the slug must be 1-64 lower-case letters, digits or hyphens")
    if session.scalars(select(Campaign.id).where(Campaign.slug == slug)).first() is not None:
        raise InvalidCampaign(f"a campaign {slug!r} exists already")
    values = _checked(name, controller, contact_email, policy_url, origins, locale, networks,
                      controller_address, validity_days)
    campaign = Campaign(slug=slug, jurisdiction=jurisdiction, **values)
    session.add(campaign)
    session.flush()
    _record_notices(session, campaign)
    return campaign


#: The fields :func:`update_campaign` changes; the slug (in every embed code) never changes.
UPDATABLE = ("name", "controller", "controller_address", "contact_email", "policy_url",
             "origins", "locale", "networks", "validity_days")


def update_campaign(session: Session, campaign: Campaign, **changes) -> Campaign:
    """Change some of a campaign's fields with the checks of :func:`create_campaign`; the
    fields not named keep their values. Records the new notice versions it causes; flushed."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise InvalidCampaign(f"cannot change {', '.join(unknown)}")
    current = {field: getattr(campaign, field) for field in UPDATABLE}
    values = _checked(**{**current, **changes})
    for field, value in values.items():
        if getattr(campaign, field) != value:
            # New lists, so that the JSON columns are seen as changed.
            setattr(campaign, field, list(value) if isinstance(value, list) else value)
    session.flush()
    _record_notices(session, campaign)
    return campaign


#: Built once: every widget and link request looks its campaign up first.
_BY_SLUG = select(Campaign).where(Campaign.slug == bindparam("slug"))
#: The same read as plain columns, on the driver's cursor.
_ROW_BY_SLUG = select(*loaded.columns(Campaign)).where(Campaign.slug == bindparam("slug"))


def by_slug(session: Session, slug: str) -> Campaign | None:
    """The campaign with this slug, or None.

    The row is read on the driver's cursor and made into the object the ORM would have loaded
    (see :mod:`consent_widget.loaded`): the ORM's own execution and loading cost most of what
    finding a campaign cost every widget and link request.
    """
    loaded.flush_pending(session)
    rows = db.driver_rows(session.connection(), _ROW_BY_SLUG, {"slug": slug})
    if not rows:
        return None
    values = rows[0]._asdict()
    if loaded.held(session, Campaign, values["id"]):
        return session.scalars(_BY_SLUG, {"slug": slug}).first()
    return loaded.instance(session, Campaign, values)


def find(slug: str) -> Campaign | None:
    """The campaign with this slug, or None, in no session: a detached object with every
    column loaded, for a request that reads its campaign before anything else (a widget page,
    a submission).

    The read runs where :func:`consent_widget.db.first_reads` says (on SQLite in no
    transaction), not through the session's ORM, which would cost several times the read;
    what is written later is written under the ledger's lock, which reads the ledger's head
    afresh.
    """
    rows = db.driver_rows(db.first_reads(), _ROW_BY_SLUG, {"slug": slug})
    return loaded.detached(Campaign, rows[0]._asdict()) if rows else None


def all_campaigns(session: Session) -> list[Campaign]:
    """Every campaign, oldest first."""
    return list(session.scalars(select(Campaign).order_by(Campaign.id)))


def describe(campaign: Campaign) -> dict:
    """A campaign's settings as the command line prints them."""
    return {"slug": campaign.slug, "name": campaign.name, "controller": campaign.controller,
            "controller_address": campaign.controller_address,
            "contact_email": campaign.contact_email, "policy_url": campaign.policy_url,
            "locale": campaign.locale, "networks": list(campaign.networks),
            "origins": list(campaign.origins), "validity_days": campaign.validity_days,
            "theme": {"accent": campaign.theme_accent or None, "font": campaign.theme_font,
                      "radius": campaign.theme_radius, "scheme": campaign.theme_scheme},
            "created_at": campaign.created_at.isoformat()}
