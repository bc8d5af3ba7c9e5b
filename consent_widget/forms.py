"""The widget's signup form: WTForms with a session-less signed CSRF token and a honeypot.

The CSRF token is a signed, timed token naming the campaign (``tokens.FORM``), so the form needs
no cookie and no server session, and works inside a sandboxed iframe whose origin is ``null``.
Nothing is ever pre-ticked, and a submission with no box ticked is valid: it records refusals.
"""
from __future__ import annotations

import secrets

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, Form, HiddenField, SelectMultipleField, StringField
from wtforms.csrf.core import CSRF, CSRFTokenField
from wtforms.validators import DataRequired, StopValidation, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from . import tokens
from .emails import MAX_EMAIL_LENGTH, InvalidEmail, normalise
from .i18n import gettext
from .models import NEWSLETTER, SOCIAL_MATCHING
from .notices import network_label

#: The only value a ticked newsletter box sends (the contract's field value).
TICKED = "y"


class _TokenSignedOnRender(CSRFTokenField):
    """The CSRF token field, whose token is signed when the form is rendered, not when it is
    built: a submission that is valid (nearly all) is never rendered again, so it signs nothing;
    and a form shown again with its errors signs the notices its validated token named."""

    def process(self, *args, **kwargs):
        """Bind the submitted value without signing a token (see :meth:`_value`)."""
        super(CSRFTokenField, self).process(*args, **kwargs)

    def _value(self):
        if self.current_token is None:
            self.current_token = self.csrf_impl.generate_csrf_token(self)
        return self.current_token


class CampaignCSRF(CSRF):
    """A CSRF token signed for one campaign: ``tokens.FORM`` over the campaign id, a nonce and
    the ids of the notices shown, so the ledger records the texts the person actually read even
    if a notice changes between showing the form and submitting it."""

    field_class = _TokenSignedOnRender

    def setup_form(self, form):
        """Remember the campaign and shown notices (the form's ``csrf_context``)."""
        self.campaign, self.shown_notices = form.meta.csrf_context
        self.form = form
        return super().setup_form(form)

    def generate_csrf_token(self, csrf_token_field):
        """A fresh token for the campaign; the nonce keeps two tokens from ever being equal."""
        # A form re-rendered with errors keeps naming the notices its page still shows.
        shown = self.form.shown_notices or self.shown_notices
        return tokens.dumps(tokens.FORM, {"c": self.campaign.id, "n": secrets.token_urlsafe(12),
                                          "t": shown})

    def validate_csrf_token(self, form, field):
        """Accept only an unexpired token that we signed for this very campaign."""
        try:
            payload = tokens.loads(tokens.FORM, field.data or "")
        except tokens.TokenExpired:
            raise ValidationError(_l("This form has expired. Please reload the page and try "
                                     "again.")) from None
        except tokens.TokenInvalid:
            raise ValidationError(_l("This form could not be verified. Please reload the page "
                                     "and try again.")) from None
        if payload.get("c") != self.campaign.id:
            raise ValidationError(_l("This form could not be verified. Please reload the page "
                                     "and try again."))
        shown = payload.get("t")
        form.shown_notices = shown if isinstance(shown, list) else []


class MultiCheckboxField(SelectMultipleField):
    """Several checkboxes sharing one name, one per choice, none ticked unless submitted so."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _email_address(form, field):
    """Accept only an address we can write to, as :func:`consent_widget.emails.normalise` says."""
    if len(field.data) > MAX_EMAIL_LENGTH:
        raise StopValidation(_l("This email address is too long (at most %(max)s characters).",
                                max=MAX_EMAIL_LENGTH))
    try:
        normalise(field.data)
    except InvalidEmail as exc:
        message = gettext("Enter a valid email address, like name@example.org.")
        # email-validator explains the mistake in English only; a French page gets our sentence.
        if str(get_locale()) == "en":
            message = f"{message} {exc}"
        raise ValidationError(message) from None


def _ticked_or_not(form, field):
    """A ticked newsletter box sends exactly ``y``: anything else is not an explicit choice."""
    if field.raw_data not in ([], [TICKED]):
        raise StopValidation(_l("This choice was not understood. Please reload the page and "
                                "try again."))


class SignupForm(Form):
    """The signup form of one campaign: its networks are the choices of ``social_matching``."""

    class Meta:
        csrf = True
        csrf_class = CampaignCSRF

    email = StringField(
        _l("Your email address"), filters=[_strip],
        validators=[DataRequired(_l("Enter your email address.")), _email_address],
        render_kw={"autocomplete": "email", "inputmode": "email", "maxlength": MAX_EMAIL_LENGTH,
                   "spellcheck": "false", "autocapitalize": "off", "required": True})
    newsletter = BooleanField(_l("Receive the newsletter by email"), validators=[_ticked_or_not])
    social_matching = MultiCheckboxField(
        invalid_choice_message=_l("This campaign does not offer matching with %(value)s."))
    # The honeypot: hidden from people and assistive technology, filled only by bots.
    website = StringField(_l("Leave this field empty"))
    lang = HiddenField()
    origin = HiddenField()

    def __init__(self, formdata=None, *, campaign, data=None, shown_notices=()):
        """Bind the form to ``campaign``: its CSRF tokens, networks and allowed origins.

        ``shown_notices`` are the ids of the notices the page shows; after validation,
        ``self.shown_notices`` holds those the submitted token names.
        """
        self.campaign = campaign
        self.shown_notices: list = []
        super().__init__(formdata, data=data,
                         meta={"csrf_context": (campaign, list(shown_notices))})
        self.social_matching.choices = [(network, network_label(network))
                                        for network in campaign.networks]

    @property
    def trapped(self) -> bool:
        """Whether the honeypot was filled, which only a bot does."""
        return bool((self.website.data or "").strip())

    @property
    def csrf_failed(self) -> bool:
        """Whether validation failed on the CSRF token (a stale or forged form)."""
        return bool(self.csrf_token.errors)

    @property
    def embedding_origin(self) -> str:
        """The origin of the site that embedded the widget, if the campaign allows it, else ""."""
        return allowed_origin(self.campaign, self.origin.data)

    def ticked(self, purpose: str, network: str) -> bool:
        """Whether the box of ``purpose`` (and ``network``) was ticked."""
        if purpose == NEWSLETTER:
            return bool(self.newsletter.data)
        if purpose == SOCIAL_MATCHING:
            return network in (self.social_matching.data or ())
        raise ValueError(f"unknown purpose {purpose!r}")


def allowed_origin(campaign, origin: str | None) -> str:
    """``origin`` when it is one of the sites the campaign lets embed its widget, else ""."""
    return origin if origin and origin in campaign.origins else ""
