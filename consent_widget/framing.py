"""Whether a page may frame a campaign's widget: its origin against the campaign's allowed
embedding origins, matched as browsers match the widget's CSP ``frame-ancestors``.

Free of Flask's request: the console's embed page asks it about a URL its team pastes.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .campaigns import InvalidCampaign, origin_of

#: Longer than any page address a person pastes; the check refuses more without parsing it.
MAX_URL_LENGTH = 2000
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: The verdicts of :func:`check_page`.
ALLOWED, NOT_ALLOWED, NOT_A_PAGE_URL, TOO_LONG, EMPTY = (
    "allowed", "not-allowed", "not-a-page-url", "too-long", "empty")


@dataclass(frozen=True)
class FramingCheck:
    """The answer about one page: ``verdict`` is one of the constants above; ``origin`` is the
    page's origin when it has one; ``matched`` the allowed origin (or ``'self'``) that lets it."""

    verdict: str
    origin: str | None = None
    matched: str | None = None

    @property
    def allowed(self) -> bool:
        """Whether the widget may be framed by the page."""
        return self.verdict == ALLOWED


def page_origin(url: str) -> str:
    """The ``scheme://host[:port]`` origin of an http(s) page URL (with any path, query or
    fragment); raise InvalidCampaign when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InvalidCampaign(f"{url!r} is not a valid URL") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidCampaign(f"{url!r} is not an http(s) URL")
    # Rebuilt from its parts so that origin_of, which refuses paths and credentials, sees the
    # origin alone; an IPv6 host keeps its brackets.
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return origin_of(f"{parts.scheme}://{host}" + (f":{port}" if port else ""))


def _parts(origin: str) -> tuple[str, str, int | None]:
    """Scheme, host and explicit port of an origin; a port written out as its scheme's
    default stays explicit, as in a CSP source expression."""
    parts = urlsplit(origin)
    return parts.scheme, parts.hostname or "", parts.port


def source_matches(source: str, origin: str) -> bool:
    """Whether the allowed origin ``source`` lets a page of ``origin`` frame the widget.

    As CSP Level 3 matches a source expression with a scheme (§6.7.2.8): the same host; an
    ``http:`` source also admits ``https:`` (a secure upgrade), never the other way round; and
    the same port, where the page's default port is no port at all, and a source's port
    written out admits the page's default one (so ``http://site`` admits ``https://site``, but
    ``http://site:80`` does not).
    """
    source_scheme, source_host, source_port = _parts(source)
    scheme, host, port = _parts(origin)
    if host != source_host or (source_scheme, scheme) not in (
            ("http", "http"), ("https", "https"), ("http", "https")):
        return False
    if port == _DEFAULT_PORTS[scheme]:
        port = None  # the URL parser drops a page's default port
    return source_port == port or (port is None and source_port == _DEFAULT_PORTS[scheme])


def check_page(url: str, allowed_origins, service_origin: str | None = None) -> FramingCheck:
    """Whether the page at ``url`` may frame a widget whose campaign lists ``allowed_origins``.

    ``service_origin`` is the service's own origin, which the widget always lets frame it
    (``'self'``: the console's preview).
    """
    url = (url or "").strip()
    if not url:
        return FramingCheck(EMPTY)
    if len(url) > MAX_URL_LENGTH:
        return FramingCheck(TOO_LONG)
    try:
        origin = page_origin(url)
    except InvalidCampaign:
        return FramingCheck(NOT_A_PAGE_URL)
    for source in allowed_origins:
        if source_matches(source, origin):
            return FramingCheck(ALLOWED, origin, source)
    if service_origin and source_matches(service_origin, origin):
        return FramingCheck(ALLOWED, origin, "'self'")
    return FramingCheck(NOT_ALLOWED, origin)
