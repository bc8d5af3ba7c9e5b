"""Browser fixtures: headless Chromium driven by Playwright, the app on a real HTTP server on
loopback, and host pages served from another origin that embed the widget as campaign sites do.

Without Chromium or Playwright the browser tests skip on a developer's machine, saying why; with
``CI`` set they fail instead, so CI cannot pass without really running them.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask, render_template_string
from werkzeug.serving import make_server

from consent_widget import db, outbox
from consent_widget.campaigns import create_campaign

CHROMIUM = "/usr/bin/chromium"
#: As the machine's notes ask: no GPU, no QUIC, and none of Chromium's own background traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SLUG = "marie"


def unavailable(reason: str):
    """Skip on a developer's machine; fail in CI, which must run every browser test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


def listening_socket() -> socket.socket:
    """A socket listening on a port of loopback that the kernel chose and that stays ours.

    Held from the start rather than probed for and bound later: another process may take a
    probed port in between, and werkzeug answers a taken port with ``sys.exit``, which pytest
    does not treat as a fixture error and which then breaks every later test using the fixture.
    """
    return socket.create_server(("127.0.0.1", 0))


class Served:
    """A WSGI app served over real HTTP on loopback from a thread, until ``stop()``."""

    def __init__(self, wsgi_app, host: str, listener: socket.socket):
        port = listener.getsockname()[1]
        self.server = make_server("127.0.0.1", port, wsgi_app, threaded=True,
                                  fd=listener.fileno())
        self.origin = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.shutdown()
        self.thread.join(5)
        self.server.server_close()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (Debian's package, not a downloaded build)."""
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is missing (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, installed from the npm registry by ``make test``."""
    if not AXE.exists():
        unavailable(f"axe-core is missing: run make test (npm install into {AXE.parent.parent})")
    return AXE.read_text(encoding="utf-8")


HOST_PAGES = {
    # The snippet campaign-create prints, with its fallback link for browsers without scripts.
    "/script": """<script src="{{ base }}/embed.js" data-campaign="{{ slug }}" async></script>
<noscript><a href="{{ base }}/w/{{ slug }}">Sign up</a></noscript>""",
    # Two placeholders and one loader: several widgets on one page, one in English.
    "/placeholders": """<div data-consent-campaign="{{ slug }}" data-lang="fr">
<a href="{{ base }}/w/{{ slug }}">Sign up</a></div>
<p>Between the two widgets.</p>
<div data-consent-campaign="{{ slug }}" data-lang="en"></div>
<script src="{{ base }}/embed.js" async></script>""",
    # The iframe-only snippet (site builders' "embed code" blocks).
    "/iframe": """<iframe src="{{ base }}/w/{{ slug }}" title="Sign up"
 style="width:100%;max-width:40rem;height:48rem;border:0"></iframe>""",
    # What WordPress makes of an oEmbed from a provider it does not know: a sandboxed frame with
    # a secret in its fragment, resized only by a height message carrying that secret.
    "/wordpress": """<iframe sandbox="allow-scripts" security="restricted" title="Sign up"
 src="{{ base }}/w/{{ slug }}#?secret=s3cr3tW0rd" data-secret="s3cr3tW0rd"
 width="600" height="338" style="border:0"></iframe>
<script>
addEventListener("message", function (event) {
  var data = event.data || {};
  if (data.message !== "height" || !data.secret) { return; }
  var frame = document.querySelector('iframe[data-secret="' + data.secret + '"]');
  if (frame && frame.contentWindow === event.source) {
    frame.height = Math.max(200, Math.min(1000, parseInt(data.value, 10)));
  }
});
</script>""",
}


def host_app(base: str) -> Flask:
    """The campaign's own site: plain pages that embed the widget, nothing else."""
    host = Flask("host_site")

    @host.get("/<name>")
    def page(name):
        body = HOST_PAGES.get("/" + name)
        if body is None:
            return "not found", 404
        return render_template_string(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Campaign site'
            '</title></head><body><h1>Campaign site</h1>' + body + "</body></html>",
            base=base, slug=SLUG)

    return host


class Site:
    """The app serving the widget, the campaign's site on another origin, and a third site that
    the campaign did not list; ``hosts`` are the only ``host:port`` a page may ever contact."""

    def __init__(self, app, widget, host, stranger, smtp):
        self.app, self.widget, self.host, self.stranger = app, widget, host, stranger
        self.smtp = smtp
        self.hosts = {urlsplit(widget.origin).netloc, urlsplit(host.origin).netloc}

    def deliver(self) -> list:
        """Run the outbox worker once; return the messages the SMTP server has received."""
        outbox.deliver_due(self.app)
        return self.smtp.messages


@pytest.fixture
def ports(app_config, smtp_server):
    """Listening sockets for the three servers; points the app's BASE_URL and MAIL_URL at
    loopback before the ``app`` fixture builds it."""
    listeners = listening_socket(), listening_socket(), listening_socket()
    widget_port = listeners[0].getsockname()[1]
    app_config.update(BASE_URL=f"http://127.0.0.1:{widget_port}", MAIL_URL=smtp_server.url)
    yield listeners
    for listener in listeners:
        listener.close()


@pytest.fixture
def site(ports, app, smtp_server):
    """The widget on http://127.0.0.1:P, the campaign's site on http://localhost:Q (another
    origin, listed with ``--origin``), and an unlisted site on http://localhost:R."""
    widget_socket, host_socket, stranger_socket = ports
    base = app.config["BASE_URL"]
    assert base == f"http://127.0.0.1:{widget_socket.getsockname()[1]}"
    host_origin = f"http://localhost:{host_socket.getsockname()[1]}"
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, SLUG, name="Marie 2027", controller="Association Marie 2027",
                            contact_email="dpo@marie2027.test",
                            policy_url="https://marie2027.test/privacy", origins=[host_origin],
                            locale="fr", networks=["facebook", "linkedin"])
    widget = Served(app, "127.0.0.1", widget_socket)
    host = Served(host_app(base), "localhost", host_socket)
    stranger = Served(host_app(base), "localhost", stranger_socket)
    yield Site(app, widget, host, stranger, smtp_server)
    for served in (widget, host, stranger):
        served.stop()


@pytest.fixture
def page(browser, site):
    """A fresh browser context and page that record every request it makes."""
    context = browser.new_context(viewport={"width": 900, "height": 900})
    tab = context.new_page()
    tab.requested = []
    tab.on("request", lambda req: tab.requested.append(req.url))
    yield tab
    context.close()
