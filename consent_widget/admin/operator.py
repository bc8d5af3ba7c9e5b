"""The operator's pages: every campaign of the service, and opening a new campaign with its
first owner (campaign owners are tenants: none of this is theirs)."""
from __future__ import annotations

from collections import defaultdict

from flask import current_app, flash, redirect, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from wtforms import EmailField, StringField
from wtforms.validators import DataRequired, Email, Length

from .. import accounts, campaigns, db, mail
from ..i18n import LOCALES
from ..models import OWNER, AdminUser, Campaign, Membership
from . import OPERATOR, log, render, route
from .auth import password_url
from .settings import CampaignForm

class NewCampaignForm(CampaignForm):
    """A new campaign and the address of its first owner."""

    slug = StringField(_l("Identifier"), validators=[DataRequired(), Length(max=64)])
    owner_email = EmailField(_l("Email address of the campaign's first owner"),
                             validators=[DataRequired(), Email(), Length(max=320)])


def _form(formdata=None) -> NewCampaignForm:
    # The networks the service offers by default come ticked: this is the operator setting
    # up the campaign (the same default as `campaign create`), not a supporter's consent, and
    # the widget still shows each network as a separate box, never ticked in advance.
    form = NewCampaignForm(formdata, data=None if formdata else {
        "networks": list(campaigns.KNOWN_NETWORKS), "locale": LOCALES[0],
        "validity_days": current_app.config["CONSENT_VALIDITY_DAYS"]})
    form.offer_choices()
    return form


def _owners() -> dict[int, list[str]]:
    rows = db.session().execute(select(Membership.campaign_id, AdminUser.email)
                                .join(AdminUser, AdminUser.id == Membership.user_id)
                                .where(Membership.role == OWNER).order_by(AdminUser.email))
    owners = defaultdict(list)
    for campaign_id, email in rows:
        owners[campaign_id].append(email)
    return owners


def _page(form, *, error=None, status=200):
    listed = db.session().scalars(select(Campaign).order_by(Campaign.name)).all()
    return render("operator.html", campaigns=listed, owners=_owners(), form=form,
                  error=error), status


@route("/operator", access=OPERATOR, methods=["GET"])
def operator():
    """The operator's page: every campaign of the service, and the form to open one."""
    return _page(_form())


@route("/operator/campaigns", access=OPERATOR, methods=["POST"])
def create_campaign():
    """Open a campaign and make its first owner, who is emailed a link to the console."""
    form = _form(request.form)
    if not form.validate():
        return _page(form, status=400)
    if not form.networks.data:
        # The domain reads "no network" as "the default ones": say so rather than guess.
        return _page(form, status=400, error=gettext("Tick at least one network."))
    session = db.session()
    try:
        campaign = campaigns.create_campaign(
            session, form.slug.data.strip(), name=form.name.data,
            controller=form.controller.data, controller_address=form.controller_address.data,
            contact_email=form.contact_email.data, policy_url=form.policy_url.data,
            origins=form.origin_list(), locale=form.locale.data, networks=form.networks.data,
            validity_days=form.validity_days.data)
        owner = accounts.user_by_email(session, form.owner_email.data)
        new_account = owner is None
        if new_account:
            owner = accounts.create_user(session, form.owner_email.data)
        accounts.grant(session, owner, campaign, OWNER)
    except (campaigns.InvalidCampaign, accounts.AccountError) as exc:
        session.rollback()
        return _page(form, status=400, error=str(exc))
    login_url = current_app.config["BASE_URL"].rstrip("/") + url_for("admin.login")
    mail.queue_console_email(
        session, owner.email, "console_campaign_owner", campaign.locale, campaign=campaign,
        opened_by=current_user.email, login_url=login_url,
        set_password_url=None if owner.password_hash else password_url(owner),
        hours=current_app.config["ADMIN_LINK_MAX_AGE"] // 3600)
    log("campaign.create", campaign=campaign, target=campaign.slug,
        detail={"owner": owner.email, "new_account": new_account})
    session.commit()
    flash(gettext("The campaign %(name)s is open; %(email)s has been sent an email to reach it.",
                  name=campaign.name, email=owner.email), "success")
    return redirect(url_for("admin.operator"))
