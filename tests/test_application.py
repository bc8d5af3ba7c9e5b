"""The app's Flask class: it works out once per function whether a view or hook is a coroutine
(``ConsentApp.ensure_sync``), and must still run every function Flask runs, those it cannot
keep included."""
from __future__ import annotations

from flask import after_this_request

from consent_widget import create_app


class _Counter:
    """A hook that is an unhashable callable (an instance with ``__eq__`` and no hash)."""

    def __init__(self):
        self.calls = 0

    def __eq__(self, other):
        return isinstance(other, _Counter) and other.calls == self.calls

    __hash__ = None

    def __call__(self, response):
        self.calls += 1
        response.headers["X-Counted"] = str(self.calls)
        return response


def test_hooks_that_cannot_be_kept_still_run_as_flask_runs_them(app_config):
    app = create_app(app_config)
    counter = _Counter()
    app.after_request(counter)

    @app.get("/_sync")
    def plain():
        # A function made afresh on each request, as after_this_request callbacks are.
        after_this_request(lambda response: response.headers.set("X-Fresh", "1") or response)
        return "plain"

    client = app.test_client()
    for number in range(1, 4):
        response = client.get("/_sync")
        assert response.status_code == 200 and response.text == "plain"
        assert response.headers["X-Fresh"] == "1"
        assert response.headers["X-Counted"] == str(number)
