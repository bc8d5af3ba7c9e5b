"""No cookies: the service keeps nothing in the browser.

Supporters reach it through a campaign's page, an embedded widget and email links, and none of
it needs a session: the widget's form token and the links carry what they need. A consent tool
that set cookies of its own would need consent for them. Flask would still look for a session
cookie and load a signer on every request; this interface tells it there is none, so nothing
can put one in the browser by mistake either (Flask's null session refuses writes).

The campaign console (``/admin``) is the one exception: its team signs in, and its session
cookie is scoped to ``/admin`` (see :class:`consent_widget.admin.ConsoleSessionInterface`).
"""
from __future__ import annotations

from flask.sessions import SessionInterface


class NoSessionInterface(SessionInterface):
    """A session interface with no session: nothing read, nothing written."""

    def open_session(self, app, request):
        """No session; Flask uses its null session instead."""
        return None

    def save_session(self, app, session, response):
        """Nothing to save."""
        return None


def init_app(app) -> None:
    """Give ``app`` no cookie session."""
    app.session_interface = NoSessionInterface()
