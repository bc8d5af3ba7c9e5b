"""A campaign's settings (owners) and its look (editors), with a preview of the real widget."""
from __future__ import annotations

from flask import flash, g, redirect, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from wtforms import (EmailField, IntegerField, SelectField, SelectMultipleField, StringField,
                     TextAreaField, URLField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (DataRequired, Email, Length, NumberRange, Optional,
                                ValidationError)
from wtforms.widgets import CheckboxInput, ListWidget

from .. import campaigns, db, theme, tokens
from ..i18n import LOCALES
from ..notices import network_label
from . import CAMPAIGN, log, render, route
from .forms import ConsoleForm

#: Most allowed embedding origins a campaign lists (each is checked).
MAX_ORIGINS = 50


class CampaignForm(ConsoleForm):
    """What the campaign is and where its widget may appear."""

    name = StringField(_l("Public name"), validators=[DataRequired(), Length(max=200)])
    controller = StringField(_l("Data controller (the candidate or party)"),
                             validators=[DataRequired(), Length(max=200)])
    controller_address = StringField(_l("Controller's postal address"),
                                     validators=[Length(max=500)])
    contact_email = EmailField(_l("Contact address for supporters' data questions"),
                               validators=[DataRequired(), Email(), Length(max=320)])
    policy_url = URLField(_l("Privacy policy URL"), validators=[DataRequired(), Length(max=2000)])
    origins = TextAreaField(_l("Sites allowed to embed the widget, one origin per line"),
                            validators=[Length(max=MAX_ORIGINS * 200)])
    networks = SelectMultipleField(_l("Social networks the widget asks about"),
                                   option_widget=CheckboxInput(),
                                   widget=ListWidget(prefix_label=False))
    locale = SelectField(_l("Default language"))
    validity_days = IntegerField(_l("Days a consent lasts before it must be renewed"),
                                 validators=[DataRequired(), NumberRange(min=1, max=3650)])

    def validate_origins(self, field):
        """At most :data:`MAX_ORIGINS` sites (each one is checked by the domain)."""
        if len(self.origin_list()) > MAX_ORIGINS:
            raise ValidationError(gettext("At most %(num)d sites.", num=MAX_ORIGINS))

    def origin_list(self) -> list[str]:
        """The origins typed, one per line, blank lines left out."""
        return [line.strip() for line in (self.origins.data or "").splitlines() if line.strip()]

    def offer_choices(self) -> None:
        """The networks and languages to choose from, labelled in the page's language."""
        self.networks.choices = [SelectChoice(n, network_label(n))
                                 for n in campaigns.KNOWN_NETWORKS]
        self.locale.choices = [SelectChoice(code, LOCALE_NAMES[code]) for code in LOCALES]


class LookForm(ConsoleForm):
    """How the widget looks: four validated values, nothing else."""

    accent = StringField(_l("Accent colour (#rrggbb, empty for the default)"),
                         validators=[Optional(), Length(max=7)])
    font = SelectField(_l("Font"))
    radius = IntegerField(_l("Corner radius in pixels (0 to 16)"),
                          validators=[NumberRange(min=0, max=theme.MAX_RADIUS)])
    scheme = SelectField(_l("Colours"))


_FONTS = {"system": _l("The device's system font"), "humanist": _l("Humanist sans-serif"),
          "geometric": _l("Geometric sans-serif"), "serif": _l("Serif")}
_SCHEMES = {"auto": _l("Follow the reader's light or dark setting"), "light": _l("Light"),
            "dark": _l("Dark")}
#: Each language by its own name, as language choosers show them.
LOCALE_NAMES = {"fr": "Français", "en": "English"}


def _campaign_form(formdata=None) -> CampaignForm:
    campaign = g.campaign
    form = CampaignForm(formdata, data=None if formdata else {
        "name": campaign.name, "controller": campaign.controller,
        "controller_address": campaign.controller_address,
        "contact_email": campaign.contact_email, "policy_url": campaign.policy_url,
        "origins": "\n".join(campaign.origins), "networks": list(campaign.networks),
        "locale": campaign.locale, "validity_days": campaign.validity_days})
    form.offer_choices()
    return form


def _look_form(formdata=None) -> LookForm:
    campaign = g.campaign
    form = LookForm(formdata, data=None if formdata else {
        "accent": campaign.theme_accent, "font": campaign.theme_font,
        "radius": campaign.theme_radius, "scheme": campaign.theme_scheme})
    form.font.choices = [SelectChoice(key, str(label)) for key, label in _FONTS.items()]
    form.scheme.choices = [SelectChoice(key, str(label)) for key, label in _SCHEMES.items()]
    return form


def _preview_url(look: dict | None = None) -> str:
    """The real widget's URL; with ``look``, signed so that the widget shows that look."""
    arguments = {"slug": g.campaign.slug, "lang": request.args.get("lang") or g.campaign.locale}
    if look is not None:
        arguments["preview"] = tokens.dumps(tokens.PREVIEW, {"c": g.campaign.id, "look": look})
    return url_for("widget.page", **arguments)


def _page(campaign_form, look_form, *, preview=None, error=None, look_error=None, status=200):
    return render("settings.html", form=campaign_form, look=look_form,
                  preview_url=preview or _preview_url(), error=error,
                  look_error=look_error), status


@route("/c/<slug>/settings", access=CAMPAIGN, read="viewer", write="owner",
       methods=["GET", "POST"])
def settings():
    """The campaign's settings; saved by owners."""
    if request.method == "GET":
        return _page(_campaign_form(), _look_form())
    form = _campaign_form(request.form)
    if not form.validate():
        return _page(form, _look_form(), status=400)
    origins = form.origin_list()
    changes = {"name": form.name.data, "controller": form.controller.data,
               "controller_address": form.controller_address.data or "",
               "contact_email": form.contact_email.data, "policy_url": form.policy_url.data,
               "origins": origins, "networks": form.networks.data or [],
               "locale": form.locale.data, "validity_days": form.validity_days.data}
    before = {key: getattr(g.campaign, key) for key in changes}
    try:
        campaigns.update_campaign(db.session(), g.campaign, **changes)
    except campaigns.InvalidCampaign as exc:
        db.session().rollback()
        return _page(form, _look_form(), status=400, error=str(exc))
    changed = sorted(key for key in changes if getattr(g.campaign, key) != before[key])
    log("campaign.update", target=g.campaign.slug, detail={"changed": changed})
    db.session().commit()
    flash(gettext("The settings are saved."), "success")
    return redirect(url_for("admin.settings", slug=g.campaign.slug))


@route("/c/<slug>/settings/look", access=CAMPAIGN, write="editor", methods=["POST"])
def look():
    """Preview a look in the real widget, or save it; editors and owners."""
    form = _look_form(request.form)
    if not form.validate():
        return _page(_campaign_form(), form, status=400)
    try:
        values = theme.validate(form.accent.data or "", form.font.data, form.radius.data,
                                form.scheme.data)
    except theme.InvalidTheme as exc:
        return _page(_campaign_form(), form, status=400, look_error=str(exc))
    if request.form.get("action") == "preview":
        return _page(_campaign_form(), form, preview=_preview_url(values))
    for column, value in values.items():
        setattr(g.campaign, column, value)
    log("campaign.look", target=g.campaign.slug, detail=values)
    db.session().commit()
    flash(gettext("The look is saved."), "success")
    return redirect(url_for("admin.settings", slug=g.campaign.slug))
