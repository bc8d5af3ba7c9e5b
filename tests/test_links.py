"""The pages behind emailed links: GET never acts, POST does, and bad tokens change nothing."""
from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from consent_widget import db, tokens, urls
from consent_widget.models import Campaign, Signup, Subject
from conftest import run_json
from helpers import counts, give, sign_up, status


def link_path(app, kind, **where):
    """The path of a confirm, manage or unsubscribe link, as an email would carry it."""
    with app.app_context():
        session = db.session()
        if kind == "confirm":
            signup = session.scalars(select(Signup).filter_by(**where)).one()
            url = urls.confirm_url(session.get(Campaign, signup.campaign_id), signup)
        else:
            subject = session.scalars(select(Subject).filter_by(**where)).one()
            campaign = session.get(Campaign, subject.campaign_id)
            url = (urls.manage_url if kind == "manage" else urls.unsubscribe_url)(campaign, subject)
    return url.removeprefix(app.config["BASE_URL"])


def test_get_on_the_confirmation_link_changes_nothing(app, client, campaign):
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    path = link_path(app, "confirm", public_id=signup)
    before = counts(app)
    for _ in range(3):
        page = client.get(path)
        assert page.status_code == 200 and b"<form" in page.data
    assert counts(app) == before
    assert status(app, "demo", "ana@example.test", "newsletter") == "requested"


def test_post_on_the_confirmation_link_confirms_once(app, client, campaign):
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    path = link_path(app, "confirm", public_id=signup)
    page = client.post(path)
    assert page.status_code == 200
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "given"
    before = counts(app)
    again = client.post(path)
    assert again.status_code == 200 and counts(app) == before


def test_an_older_confirmation_link_is_superseded_by_a_newer_signup(app, client, campaign):
    old = sign_up(app, "demo", "ana@example.test", networks=["facebook"])
    sign_up(app, "demo", "ana@example.test", newsletter=True)
    response = client.post(link_path(app, "confirm", public_id=old))
    assert response.status_code == 409
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") != "given"


def test_manage_page_lists_consents_and_withdraws_one_network(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook", "linkedin"])
    path = link_path(app, "manage", email="ana@example.test")
    before = counts(app)
    page = client.get(path)
    assert page.status_code == 200 and counts(app) == before
    assert b'value="social_matching:facebook"' in page.data
    response = client.post(path, data={"withdraw": "social_matching:facebook"})
    assert response.status_code == 200
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "withdrawn"
    assert status(app, "demo", "ana@example.test", "social_matching", "linkedin") == "given"
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


@pytest.mark.parametrize("value, left", [
    ("newsletter", {"newsletter": "withdrawn", "facebook": "given", "linkedin": "given"}),
    ("social_matching", {"newsletter": "given", "facebook": "withdrawn", "linkedin": "withdrawn"}),
    ("all", {"newsletter": "withdrawn", "facebook": "withdrawn", "linkedin": "withdrawn"}),
])
def test_manage_page_withdraws_a_purpose_or_everything_in_one_post(app, client, campaign, value,
                                                                   left):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook", "linkedin"])
    client.post(link_path(app, "manage", email="ana@example.test"), data={"withdraw": value})
    assert status(app, "demo", "ana@example.test", "newsletter") == left["newsletter"]
    for network in ("facebook", "linkedin"):
        assert status(app, "demo", "ana@example.test", "social_matching", network) == left[network]


@pytest.mark.parametrize("value", ["", "everything", "social_matching:myspace", "x" * 100])
def test_manage_page_rejects_unknown_withdrawals(app, client, campaign, value):
    give(app, "demo", "ana@example.test", newsletter=True)
    before = counts(app)
    response = client.post(link_path(app, "manage", email="ana@example.test"),
                           data={"withdraw": value})
    assert response.status_code == 400 and counts(app) == before


def test_one_click_unsubscribe_post_works_without_cookies(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    path = link_path(app, "unsubscribe", email="ana@example.test")
    assert client.get(path).status_code == 200
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
    client.delete_cookie("session")
    response = client.post(path, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert status(app, "demo", "ana@example.test", "newsletter") == "withdrawn"
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "given"


def tampered(path):
    head, token = path.rsplit("/", 1)
    payload, stamp, signature = token.split(".")
    return f"{head}/{payload}.{stamp}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize("kind", ["confirm", "manage", "unsubscribe"])
@pytest.mark.parametrize("attack", ["forged", "tampered", "other_purpose", "garbage"])
def test_forged_and_tampered_links_are_refused_and_change_nothing(app, client, campaign, kind,
                                                                  attack):
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    give(app, "demo", "ben@example.test", newsletter=True)
    where = {"public_id": signup} if kind == "confirm" else {"email": "ben@example.test"}
    path = link_path(app, kind, **where)
    head = path.rsplit("/", 1)[0]
    if attack == "forged":
        forger = URLSafeTimedSerializer("not-our-secret", salt="consent_widget.manage.v1")
        path = head + "/" + forger.dumps({"c": campaign.id, "s": signup, "sub": "x", "v": 1})
    elif attack == "tampered":
        path = tampered(path)
    elif attack == "other_purpose":
        other = "manage" if kind != "manage" else "unsubscribe"
        with app.app_context():
            session = db.session()
            subject = session.scalars(select(Subject).filter_by(email="ben@example.test")).one()
            path = head + "/" + tokens.subject_token(other, subject)
    else:
        path = head + "/" + "%00" * 10
    before = counts(app)
    assert client.get(path).status_code == 404
    assert client.post(path, data={"withdraw": "all"}).status_code == 404
    for action in ("erase", "erase-confirmed"):
        assert client.post(path, data={"action": action}).status_code == 404
    assert counts(app) == before
    with app.app_context():
        assert db.session().scalars(select(Subject.email).filter_by(
            email="ben@example.test")).one() == "ben@example.test"


def test_erase_my_data_asks_first_and_only_the_second_button_erases(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    path = link_path(app, "manage", email="ana@example.test")
    manage = client.get(path + "?lang=en").get_data(as_text=True)
    assert 'name="action" value="erase"' in manage
    before = counts(app)
    asked = client.post(path + "?lang=en", data={"action": "erase"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Erase your data?" in page
    assert 'value="erase-confirmed"' in page and "No, keep my data and go back" in page
    assert "<script" not in page and "Set-Cookie" not in asked.headers
    assert counts(app) == before and status(app, "demo", "ana@example.test", "newsletter") == "given"
    erased = client.post(path, data={"action": "erase-confirmed"})
    assert erased.status_code == 200 and "Set-Cookie" not in erased.headers
    assert status(app, "demo", "ana@example.test", "newsletter") == "withdrawn"
    with app.app_context():
        assert db.session().scalars(select(Subject.email)).one() is None
    # The link died with the address: the confirmation cannot be replayed.
    assert client.post(path, data={"action": "erase-confirmed"}).status_code == 404


@pytest.mark.parametrize("kind", ["confirm", "manage"])
def test_expired_links_say_expired_and_change_nothing(app, client, campaign, kind):
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    if kind == "manage":
        give(app, "demo", "ben@example.test", newsletter=True)
    where = {"public_id": signup} if kind == "confirm" else {"email": "ben@example.test"}
    path = link_path(app, kind, **where)
    app.config["CONFIRM_MAX_AGE" if kind == "confirm" else "MANAGE_MAX_AGE"] = -1
    before = counts(app)
    get = client.get(path)
    assert get.status_code == 410 and b"expir" in get.data.lower()
    assert client.post(path, data={"withdraw": "all"}).status_code == 410
    if kind == "manage":
        assert client.post(path, data={"action": "erase-confirmed"}).status_code == 410
    assert counts(app) == before


def test_a_link_of_one_campaign_is_refused_by_another(app, client, runner, campaign):
    run_json(runner, "campaign", "create", "other", "--name", "Other", "--controller", "Other",
             "--contact-email", "dpo@other.test", "--policy-url", "https://other.test/p")
    give(app, "demo", "ana@example.test", newsletter=True)
    path = link_path(app, "manage", email="ana@example.test").replace("/w/demo/", "/w/other/")
    before = counts(app)
    assert client.get(path).status_code == 404
    assert client.post(path, data={"withdraw": "all"}).status_code == 404
    assert counts(app) == before


def test_manage_and_unsubscribe_links_are_superseded_by_erasure(app, client, runner, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    manage = link_path(app, "manage", email="ana@example.test")
    unsubscribe = link_path(app, "unsubscribe", email="ana@example.test")
    run_json(runner, "subject", "erase", "ana@example.test")
    give(app, "demo", "ana@example.test", newsletter=True)  # signs up again: new links
    assert client.get(manage).status_code == 404
    assert client.post(unsubscribe).status_code == 404
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


def test_the_confirmation_page_says_when_a_newer_request_replaced_it(app, client, campaign):
    old = sign_up(app, "demo", "ana@example.test", networks=["facebook"])
    sign_up(app, "demo", "ana@example.test", newsletter=True)
    page = client.get(link_path(app, "confirm", public_id=old) + "?lang=en")
    assert page.status_code == 200
    assert b"newer request" in page.data and b"<form" not in page.data


def test_link_pages_are_private(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    response = client.get(link_path(app, "manage", email="ana@example.test"))
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("kind", ["confirm", "unsubscribe"])
def test_confirm_and_unsubscribe_links_of_one_campaign_are_refused_by_another(app, client, runner,
                                                                            campaign, kind):
    run_json(runner, "campaign", "create", "other", "--name", "Other", "--controller", "Other",
             "--contact-email", "dpo@other.test", "--policy-url", "https://other.test/p")
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    give(app, "demo", "ben@example.test", newsletter=True)
    where = {"public_id": signup} if kind == "confirm" else {"email": "ben@example.test"}
    path = link_path(app, kind, **where).replace("/w/demo/", "/w/other/")
    before = counts(app)
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404
    assert counts(app) == before


def test_an_expired_unsubscribe_link_says_expired_and_changes_nothing(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    path = link_path(app, "unsubscribe", email="ana@example.test")
    app.config["MANAGE_MAX_AGE"] = -1
    assert client.post(path).status_code == 410
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


def test_unknown_campaign_is_404(client, campaign):
    assert client.get("/w/nope/manage/abc").status_code == 404


def test_a_confirmation_link_is_refused_when_its_signup_or_campaign_is_not_there(
        app, client, campaign):
    """A well signed token naming no signup of the campaign is refused as not valid, and a good
    link under an unknown campaign's address is a 404; neither changes anything."""
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    path = link_path(app, "confirm", public_id=signup)
    with app.test_request_context():
        campaign_id = tokens.loads(tokens.CONFIRM, path.rsplit("/", 1)[1])["c"]
        unknown = tokens.dumps(tokens.CONFIRM, {"c": campaign_id, "s": "sgn_nobody"})
    before = counts(app)
    refused = client.post(f"/w/demo/confirm/{unknown}?lang=en")
    assert refused.status_code == 404 and b"This link is not valid" in refused.data
    elsewhere = client.post(path.replace("/w/demo/", "/w/nope/") + "?lang=en")
    assert elsewhere.status_code == 404 and b"This link is not valid" not in elsewhere.data
    assert counts(app) == before
    assert client.post(path).status_code == 200
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


def test_link_tokens_follow_a_rotated_secret_key(app):
    """itsdangerous takes a list of keys, the newest last: links signed with the older one
    still open while new links are signed with the newer one."""
    from consent_widget import tokens
    payload = {"c": 1, "s": "sgn_x"}
    with app.test_request_context():
        old = tokens.dumps(tokens.CONFIRM, payload)
        app.config["SECRET_KEY"] = [app.config["SECRET_KEY"], "a newer key of the service"]
        new = tokens.dumps(tokens.CONFIRM, payload)
        assert new != old
        assert tokens.loads(tokens.CONFIRM, old) == tokens.loads(tokens.CONFIRM, new) == payload
        app.config["SECRET_KEY"] = "a newer key of the service"
        assert tokens.loads(tokens.CONFIRM, new) == payload
        with pytest.raises(tokens.TokenInvalid):
            tokens.loads(tokens.CONFIRM, old)


def test_a_submission_and_a_confirmation_each_take_one_connection_from_the_pool(
        app, client, campaign):
    # Each connection taken costs a ping and a transaction of its own on PostgreSQL: the widget
    # reads its campaign, and a confirmation its link, in the transaction it writes in there,
    # and on SQLite on the thread's own reader, which is not the pool's.
    from sqlalchemy import event

    from helpers import widget_form
    with app.app_context():
        engine = db.engine()

    def sign_up_and_confirm(email):
        data = widget_form(client, email)
        taken.clear()
        response = client.post("/w/demo", data=data, headers={"Accept": "application/json"})
        assert response.status_code == 202, response.json
        submitted = len(taken)
        with app.app_context():
            public_id = db.session().scalars(
                select(Signup.public_id).order_by(Signup.id.desc())).first()
        path = link_path(app, "confirm", public_id=public_id)
        taken.clear()
        confirmed = client.post(path)
        assert confirmed.status_code == 200 and b"receipt-states" in confirmed.data
        return submitted, len(taken)

    taken = []
    listener = lambda *_args: taken.append(1)  # noqa: E731
    event.listen(engine, "checkout", listener)
    try:
        # The first creates the signing key, which a process remembers once it has read it back.
        sign_up_and_confirm("first@example.test")
        sign_up_and_confirm("second@example.test")
        assert sign_up_and_confirm("ana@example.test") == (1, 1)
    finally:
        event.remove(engine, "checkout", listener)
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
