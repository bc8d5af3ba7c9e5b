"""The consent texts pages: publishing a text makes a new notice version that the widget shows
and new consents point to, while older consents and receipts keep theirs; every check of the
law's needs and of pre-ticking refuses with its reason and changes nothing; texts render
escaped in the console, the widget and the confirmation email; viewers read, outsiders get 404.
"""
from __future__ import annotations

import email
import email.policy
import html
import re

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from consent_widget import consent_texts, db, notices, outbox, receipts
from consent_widget.campaigns import by_slug, create_campaign
from consent_widget.models import AuditEntry, ConsentEvent, Notice, Receipt, Signup
from consent_widget.text_checks import check_text

from console import console, post
from helpers import confirm, give, widget_form

NEWSLETTER_FR = "/admin/c/demo/texts/newsletter/fr"
FACEBOOK_FR = "/admin/c/demo/texts/social_matching.facebook/fr"
FACEBOOK_EN = "/admin/c/demo/texts/social_matching.facebook/en"
#: Texts that pass every check (the demo campaign's controller is "Association Marie 2027").
GOOD = {
    ("newsletter", "", "fr"): "Recevez chaque mois la lettre d’information envoyée par "
                              "Association Marie 2027. Désabonnez-vous à tout moment avec le "
                              "lien de chaque e-mail.",
    ("social_matching", "facebook", "fr"): "J’autorise Association Marie 2027 à copier mon "
                                           "profil public Facebook, ma ville et ma biographie. "
                                           "Je peux retirer mon accord à tout moment.",
    ("social_matching", "facebook", "en"): "I let Association Marie 2027 copy my public "
                                           "Facebook profile, city and biography. I can "
                                           "withdraw at any time.",
}
XSS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


def editor(app):
    return console(app, "editor@marie2027.test", slug="demo", role="editor")


def body(response) -> str:
    return response.get_data(as_text=True)


def snapshot(app) -> dict:
    """What a refused publication must leave as it was."""
    with app.app_context():
        session = db.session()
        rows = session.execute(select(Notice.id, Notice.purpose, Notice.network, Notice.locale,
                                      Notice.version, Notice.text_sha256)
                               .order_by(Notice.id)).all()
        return {"texts": dict(by_slug(session, "demo").notice_texts),
                "notices": [tuple(row) for row in rows],
                "audit": session.scalar(select(func.count()).select_from(AuditEntry))}


def item_notices(app, purpose="newsletter", network="", locale="fr") -> list[Notice]:
    with app.app_context():
        return list(db.session().scalars(select(Notice).where(
            Notice.purpose == purpose, Notice.network == network,
            Notice.locale == locale).order_by(Notice.version)))


def audit_entries(app, action="text.publish") -> list[AuditEntry]:
    with app.app_context():
        return list(db.session().scalars(select(AuditEntry).where(AuditEntry.action == action)
                                         .order_by(AuditEntry.id)))


def publish(client, path, text):
    return post(client, path, {"text": text, "action": "publish"})


def widget_text(client, element_id: str, lang="fr") -> str:
    page = body(client.get(f"/w/demo?lang={lang}"))
    return re.search(rf'id="{element_id}">([^<]*)</p>', page).group(1)


# --- the checks, as the domain sees them ----------------------------------------------------------

def test_every_catalogue_text_passes_every_check(app):
    with app.test_request_context("/"):
        with db.transaction() as session:
            campaign = create_campaign(session, "all", name="Tout 2027", controller="Parti Tout",
                                       contact_email="dpo@tout.test",
                                       policy_url="https://tout.test/p")
            for item in consent_texts.items(campaign):
                text = consent_texts.catalogue_text(campaign, item)
                assert check_text(item.purpose, item.network, item.locale, text, campaign) == [], \
                    item


def test_diff_marks_words_and_escapes_every_piece(app):
    changes = str(consent_texts.diff("Keep <b> this & drop that", "Keep <b> this & add <i>"))
    assert "<del>drop that</del>" in changes
    assert "<ins>add &lt;i&gt;</ins>" in changes
    assert changes.startswith("Keep &lt;b&gt; this &amp; ")
    assert "<b>" not in changes and "<i>" not in changes


# --- the pages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["viewer", "editor", "owner"])
def test_the_list_shows_every_box_and_language_to_every_role(app, campaign, role):
    client = console(app, f"{role}@marie2027.test", slug="demo", role=role)
    page = body(client.get("/admin/c/demo/texts"))
    with app.app_context():
        shown = notices.current_notice(db.session(), by_slug(db.session(), "demo"),
                                       "social_matching", "linkedin", "en", record=False)
    assert shown.text_sha256[:12] + "…" in page and shown.text_sha256 in page
    for label in ("Recevoir la lettre d’information par e-mail", "Rapprocher mon profil Facebook",
                  "Link my LinkedIn profile", "Receive the newsletter by email"):
        assert html.escape(label, quote=False) in page
    assert page.count("<tr>") == 1 + 6  # the header, then 3 boxes in 2 languages
    edit_page = body(client.get(FACEBOOK_FR))
    assert ("<textarea" in edit_page) == (role != "viewer")
    assert body(client.get(FACEBOOK_FR + "/versions")).count('<th scope="row"') == 1


def test_publishing_shows_the_text_in_the_widget_and_records_a_new_version(app, campaign, client):
    text = GOOD[("social_matching", "facebook", "fr")]
    before = item_notices(app, "social_matching", "facebook", "fr")
    response = publish(editor(app), FACEBOOK_FR, text)
    assert response.status_code == 302
    after = item_notices(app, "social_matching", "facebook", "fr")
    assert [n.version for n in after] == [1, 2] and after[0].text == before[0].text
    assert after[1].text == text
    assert after[1].text_sha256 == notices.text_sha256(text)
    assert html.unescape(widget_text(client, "social_matching-0-text")) == text
    # Only that box in that language changed.
    assert html.unescape(widget_text(client, "social_matching-0-text", "en")) == item_notices(
        app, "social_matching", "facebook", "en")[0].text
    assert snapshot(app)["texts"] == {"social_matching:facebook:fr": text}
    [entry] = audit_entries(app)
    assert entry.target == "social_matching:facebook:fr"
    assert entry.user_email == "editor@marie2027.test"
    assert entry.detail == {"version": 2, "sha256": after[1].text_sha256, "source": "custom"}


def test_new_consents_point_to_the_new_version_and_old_receipts_keep_theirs(app, campaign,
                                                                           client):
    old_receipt = give(app, "demo", "before@example.test", newsletter=True)
    with app.app_context():
        old_jws = db.session().get(Receipt, old_receipt).jws
    [old_notice] = item_notices(app)
    assert publish(editor(app), NEWSLETTER_FR, GOOD[("newsletter", "", "fr")]).status_code == 302
    new_notice = item_notices(app)[-1]

    response = client.post("/w/demo", data=widget_form(client, "after@example.test",
                                                       "/w/demo?lang=fr"))
    assert response.status_code == 200
    with app.app_context():
        signup = db.session().scalars(select(Signup).order_by(Signup.id.desc())).first()
        public_id = signup.public_id
    new_receipt = confirm(app, public_id)
    with app.app_context():
        session = db.session()
        events = session.scalars(select(ConsentEvent).where(
            ConsentEvent.signup_id == signup.id, ConsentEvent.purpose == "newsletter")).all()
        assert {e.type for e in events} == {"requested", "given"}
        assert {e.notice_id for e in events} == {new_notice.id}
        new_claims = receipts.decode(session.get(Receipt, new_receipt))
        old_row = session.get(Receipt, old_receipt)
        old_claims = receipts.decode(old_row)
        kept = session.get(Notice, old_notice.id)
    assert old_row.jws == old_jws
    assert (kept.text, kept.text_sha256) == (old_notice.text, old_notice.text_sha256)
    sha_of = {n["purpose"]: n["sha256"] for n in old_claims["ext"]["notices"]}
    assert sha_of["newsletter"] == old_notice.text_sha256
    sha_of = {n["purpose"]: n["sha256"] for n in new_claims["ext"]["notices"]}
    assert sha_of["newsletter"] == new_notice.text_sha256 != old_notice.text_sha256


def test_two_boxes_published_one_after_the_other_both_stay(app, campaign):
    client = editor(app)
    assert publish(client, NEWSLETTER_FR, GOOD[("newsletter", "", "fr")]).status_code == 302
    assert publish(client, FACEBOOK_EN, GOOD[("social_matching", "facebook", "en")]) \
        .status_code == 302
    assert set(snapshot(app)["texts"]) == {"newsletter::fr", "social_matching:facebook:en"}


# --- refusals -----------------------------------------------------------------------------------

FB_FR = GOOD[("social_matching", "facebook", "fr")]
FB_EN = GOOD[("social_matching", "facebook", "en")]
NL_FR = GOOD[("newsletter", "", "fr")]
REFUSED = [
    # (page, text, code's message fragment as the page shows it)
    (FACEBOOK_FR, FB_FR.replace("Facebook", "du réseau"), "le texte doit nommer Facebook"),
    (FACEBOOK_FR, FB_FR.replace("profil public Facebook", "compte Facebook"),
     "ne mentionne pas le profil public"),
    (FACEBOOK_FR, FB_FR.replace("ma ville", "mes goûts"), "ne mentionne pas la localisation"),
    (FACEBOOK_FR, FB_FR.replace("ma biographie", "mes amis"), "ne mentionne pas la biographie"),
    (FACEBOOK_FR, FB_FR.replace("Association Marie 2027", "la campagne"),
     "doit nommer le responsable du traitement"),
    (FACEBOOK_FR, FB_FR.replace("Je peux retirer mon accord à tout moment.", "Merci."),
     "ne dit pas qu’il peut être retiré"),
    (FACEBOOK_FR, FB_FR.replace("à tout moment", "dans un an"),
     "le retrait est possible à tout moment"),
    (FACEBOOK_FR, FB_FR + " J’accepte aussi la publicité politique ciblée.",
     "consentement à la publicité ciblée"),
    (FACEBOOK_FR, FB_FR + " Même chose pour LinkedIn.", "ce texte nomme aussi LinkedIn"),
    (FACEBOOK_EN, FB_EN.replace("biography", "friends"),
     "ne mentionne pas la biographie (mots acceptés : biograph*, bio, about me, description*)"),
    (FACEBOOK_EN, FB_EN + " This also lets us show you targeted political ads.",
     "consentement à la publicité ciblée"),
    # Language-aware: the French word does not count in the English text.
    (FACEBOOK_EN, FB_EN.replace("withdraw", "retirer"),
     "ne dit pas qu’il peut être retiré (mots acceptés : withdraw*, revok*, revoc*)"),
    (NEWSLETTER_FR, NL_FR.replace("Désabonnez-vous", "Lisez-la"), "comment se désabonner"),
    (NEWSLETTER_FR, NL_FR.replace("Association Marie 2027", "nous"),
     "doit nommer le responsable du traitement"),
    (NEWSLETTER_FR, "Trop court", "entre 20 et 2000 caractères ; celui-ci en compte 10"),
    (NEWSLETTER_FR, NL_FR + " x" * 1000, f"celui-ci en compte {len(NL_FR) + 2000}."),
]


@pytest.mark.parametrize("path, text, reason", REFUSED)
def test_a_text_missing_what_the_law_needs_is_refused_with_the_reason(app, campaign, path, text,
                                                                      reason):
    client = editor(app)
    before = snapshot(app)
    response = publish(client, path, text)
    assert response.status_code == 400
    page = body(response)
    assert html.escape(reason, quote=False) in page
    assert "Ce texte ne peut pas être publié" in page
    assert snapshot(app) == before


PRETICKED = ["☑ Oui.", "✔ Oui.", "✅ Oui.", "[x] Oui.", "(X) Oui.",
             "Cette case est déjà cochée pour vous.", "Coché par défaut.",
             "This box is already ticked.", "Subscribed by default.", "Pre-ticked for you."]


@pytest.mark.parametrize("addition", PRETICKED)
def test_a_text_that_pre_ticks_anything_is_refused(app, campaign, addition):
    client = editor(app)
    before = snapshot(app)
    response = publish(client, NEWSLETTER_FR, NL_FR + " " + addition)
    assert response.status_code == 400
    assert ("montre une case cochée" in body(response)
            or "choisi d’avance" in body(response)), addition
    assert snapshot(app) == before


@pytest.mark.parametrize("payload", [*XSS, "&lt;b&gt;gras&lt;/b&gt;", "<!-- note -->",
                                     "lien <a href=https://x.test>ici</a>"])
def test_markup_is_refused_and_shown_back_inert(app, campaign, payload):
    client = editor(app)
    before = snapshot(app)
    response = publish(client, NEWSLETTER_FR, NL_FR + " " + payload)
    assert response.status_code == 400
    page = body(response)
    assert "ne peut contenir ni HTML ni autre balisage" in page
    assert payload not in page
    assert str(escape(payload)) in page  # in the textarea and the preview, inert
    assert snapshot(app) == before


def test_invisible_and_direction_changing_characters_are_refused(app, campaign):
    client = editor(app)
    before = snapshot(app)
    response = publish(client, NEWSLETTER_FR, NL_FR.replace("chaque mois", "chaque\u202e mois"))
    assert response.status_code == 400
    assert "caractères invisibles" in body(response)
    assert snapshot(app) == before


def test_publishing_the_text_already_shown_is_refused(app, campaign):
    client = editor(app)
    assert publish(client, NEWSLETTER_FR, NL_FR).status_code == 302
    before = snapshot(app)
    response = publish(client, NEWSLETTER_FR, "  " + NL_FR.replace(" ", "\n", 1) + "\r\n")
    assert response.status_code == 400
    assert "il n’y a rien à publier" in body(response)
    assert snapshot(app) == before


def test_a_huge_post_is_refused_before_any_check(app, campaign):
    client = editor(app)
    before = snapshot(app)
    response = publish(client, NEWSLETTER_FR, "x" * 10_000)
    assert response.status_code == 400
    assert "bien plus long qu’un texte de consentement" in body(response)
    assert snapshot(app) == before


def test_checking_and_previewing_changes_nothing(app, campaign):
    client = editor(app)
    before = snapshot(app)
    good = post(client, FACEBOOK_FR, {"text": FB_FR, "action": "preview"})
    assert good.status_code == 200
    assert "passe toutes les vérifications" in body(good)
    assert html.escape(FB_FR, quote=False) in body(good)
    assert "<ins>" in body(good) and "<del>" in body(good)  # against the text shown now
    bad = post(client, FACEBOOK_FR, {"text": FB_FR.replace("ma ville", "mes goûts"),
                                     "action": "preview"})
    assert bad.status_code == 200 and "Ce texte serait refusé" in body(bad)
    assert snapshot(app) == before


# --- escaping everywhere --------------------------------------------------------------------------

def test_a_text_with_lt_and_amp_is_published_and_escaped_everywhere(app, campaign, client,
                                                                   tmp_path):
    text = NL_FR + ' Pour nous, 2 < 3 & "tout" compte.'
    editor_client = editor(app)
    assert publish(editor_client, NEWSLETTER_FR, text).status_code == 302
    escaped = "2 &lt; 3 &amp; "
    # The console: the edit page's textarea and preview, the versions page.
    for page in (body(editor_client.get(NEWSLETTER_FR)),
                 body(editor_client.get(NEWSLETTER_FR + "/versions"))):
        assert escaped in page and "2 < 3 &" not in page
    # The widget.
    widget = body(client.get("/w/demo?lang=fr"))
    assert escaped in widget and "2 < 3 &" not in widget
    # The confirmation email, as the worker writes it to the file outbox.
    assert client.post("/w/demo", data=widget_form(client, "ana@example.test",
                                                   "/w/demo?lang=fr")).status_code == 200
    assert outbox.deliver_due(app)["sent"] == 1
    [written] = (tmp_path / "outbox").iterdir()
    message = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    text_part = message.get_body(("plain",)).get_content()
    html_part = message.get_body(("html",)).get_content()
    assert 'Pour nous, 2 < 3 & "tout" compte.' in text_part  # plain text stays plain
    assert escaped in html_part and "2 < 3 &" not in html_part


# --- who may do what ----------------------------------------------------------------------------

def test_viewers_read_but_cannot_publish_or_reset(app, campaign):
    assert publish(editor(app), NEWSLETTER_FR, NL_FR).status_code == 302
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    before = snapshot(app)
    assert viewer.get(NEWSLETTER_FR).status_code == 200
    assert viewer.get(NEWSLETTER_FR + "/versions").status_code == 200
    assert publish(viewer, NEWSLETTER_FR, NL_FR + " Encore.").status_code == 403
    assert post(viewer, NEWSLETTER_FR, {"text": NL_FR, "action": "preview"}).status_code == 403
    assert post(viewer, NEWSLETTER_FR + "/reset").status_code == 403
    assert snapshot(app) == before


@pytest.fixture
def other(app, campaign):
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Autre 2027", controller="Autre parti",
                            contact_email="dpo@autre.test", policy_url="https://autre.test/p",
                            networks=["meetup"])
    return console(app, "owner@autre.test", slug="other")


def test_members_of_another_campaign_get_not_found(app, other):
    before = snapshot(app)
    for path in ("/admin/c/demo/texts", NEWSLETTER_FR, FACEBOOK_FR + "/versions"):
        assert other.get(path).status_code == 404, path
    assert publish(other, NEWSLETTER_FR, NL_FR).status_code == 404
    assert post(other, FACEBOOK_FR + "/reset").status_code == 404
    # In their own campaign's URLs, boxes it does not offer are not found either.
    for path in ("/admin/c/other/texts/social_matching.facebook/fr",
                 "/admin/c/other/texts/newsletter/de", "/admin/c/other/texts/nothing/fr"):
        assert other.get(path).status_code == 404, path
    assert publish(other, "/admin/c/other/texts/social_matching.facebook/fr",
                   FB_FR).status_code == 404
    assert snapshot(app) == before
    assert other.get("/admin/c/other/texts/social_matching.meetup/fr").status_code == 200


# --- versions, differences, back to the catalogue -------------------------------------------------

def test_versions_are_listed_and_two_of_them_compared(app, campaign):
    client = editor(app)
    catalogue = item_notices(app)[0].text
    assert publish(client, NEWSLETTER_FR, NL_FR).status_code == 302
    assert publish(client, NEWSLETTER_FR, NL_FR.replace("chaque mois", "chaque semaine")) \
        .status_code == 302
    versions = item_notices(app)
    page = body(client.get(NEWSLETTER_FR + "/versions"))
    for notice in versions:
        assert notice.text_sha256 in page
    assert page.count("<td>Votre équipe") == 2 and page.count("<td>Le catalogue") == 1
    # By default the two newest; here the words that changed.
    assert "<del>mois</del><ins>semaine</ins>" in page
    chosen = body(client.get(NEWSLETTER_FR + "/versions?old=1&new=3"))
    assert "De la version 1 à la version 3" in chosen
    assert "<ins>" in chosen and "<del>" in chosen
    assert html.escape(catalogue.split()[0], quote=False) in chosen
    for bad in ("old=9", "new=abc", "old=-1", "new=1.0"):
        response = client.get(NEWSLETTER_FR + "/versions?" + bad)
        assert response.status_code == 400, bad


def test_going_back_to_the_catalogue_is_a_publication(app, campaign, client):
    editor_client = editor(app)
    catalogue = item_notices(app)[0].text
    assert publish(editor_client, NEWSLETTER_FR, NL_FR).status_code == 302
    assert post(editor_client, NEWSLETTER_FR + "/reset").status_code == 302
    versions = item_notices(app)
    assert [n.version for n in versions] == [1, 2, 3]
    assert versions[2].text == catalogue
    assert snapshot(app)["texts"] == {}
    assert html.unescape(widget_text(client, "newsletter-text")) == catalogue
    assert [e.detail["source"] for e in audit_entries(app)] == ["custom", "catalogue"]
    assert audit_entries(app)[1].detail["version"] == 3
    before = snapshot(app)
    again = post(editor_client, NEWSLETTER_FR + "/reset")
    assert again.status_code == 400 and "affiche déjà le texte du catalogue" in body(again)
    assert snapshot(app) == before


def test_a_text_equal_to_the_catalogues_follows_the_catalogue(app, campaign):
    client = editor(app)
    catalogue = item_notices(app)[0].text
    assert publish(client, NEWSLETTER_FR, NL_FR).status_code == 302
    assert publish(client, NEWSLETTER_FR, catalogue).status_code == 302
    assert snapshot(app)["texts"] == {}
    assert audit_entries(app)[-1].detail["source"] == "catalogue"


def test_the_docs_list_every_word_the_checks_accept_or_refuse():
    from pathlib import Path

    from consent_widget import text_checks
    docs = (Path(__file__).resolve().parent.parent / "docs" / "consent-texts.md").read_text()
    words = [word for requirement in (*text_checks.MATCHING_REQUIREMENTS,
                                      *text_checks.NEWSLETTER_REQUIREMENTS)
             for language in requirement.words.values() for word in language]
    for word in (*words, *text_checks.PRESELECTION_WORDS, *text_checks.CHECKED_GLYPHS):
        assert word.replace("*", "\\*") in docs, word
    for requirement in (*text_checks.MATCHING_REQUIREMENTS, *text_checks.NEWSLETTER_REQUIREMENTS):
        assert f"`{requirement.code}`" in docs, requirement.code
