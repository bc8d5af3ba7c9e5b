"""A campaign's team: its members and their roles, invitations, and the audit log."""
from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from .. import accounts, audit, db, mail
from ..models import ROLES, Membership
from . import CAMPAIGN, log, render, role_label, route
from .forms import InviteForm


def _invite_form(data=None) -> InviteForm:
    form = InviteForm(data)
    form.role.choices = [SelectChoice(role, role_label(role)) for role in ROLES]
    return form


@route("/c/<slug>/team", access=CAMPAIGN, read="viewer", write="owner", methods=["GET"])
def team():
    """The members, their roles and the pending invitations."""
    return render("team.html", members=accounts.team(db.session(), g.campaign),
                  invitations=accounts.pending_invitations(db.session(), g.campaign),
                  form=_invite_form(), roles=ROLES)


@route("/c/<slug>/team/invite", access=CAMPAIGN, write="owner", methods=["POST"])
def invite():
    """Invite someone by email: a signed link that works once, sent through the outbox."""
    form = _invite_form(request.form)
    if not form.validate():
        return render("team.html", members=accounts.team(db.session(), g.campaign),
                      invitations=accounts.pending_invitations(db.session(), g.campaign),
                      form=form, roles=ROLES), 400
    days = current_app.config["ADMIN_INVITATION_DAYS"]
    invitation = accounts.invite(db.session(), g.campaign, form.email.data, form.role.data,
                                 current_user.row, days=days)
    token = accounts.invitation_token(current_app.config["SECRET_KEY"], invitation)
    url = current_app.config["BASE_URL"].rstrip("/") + url_for("admin.accept_invitation",
                                                                token=token)
    mail.queue_console_email(db.session(), invitation.email, "console_invitation",
                             g.get("locale") or g.campaign.locale, campaign=g.campaign, url=url,
                             role=role_label(invitation.role), invited_by=current_user.email,
                             days=days)
    log("invitation.send", target=invitation.public_id,
        detail={"email": invitation.email, "role": invitation.role})
    db.session().commit()
    flash(gettext("Invitation sent to %(email)s.", email=invitation.email), "success")
    return redirect(url_for("admin.team", slug=g.campaign.slug))


def _member(member_id: str) -> Membership:
    member = db.session().scalars(select(Membership).where(
        Membership.id == (int(member_id) if member_id.isdigit() else -1),
        Membership.campaign_id == g.campaign.id)).first()
    if member is None:
        abort(404)
    return member


@route("/c/<slug>/team/<member_id>/role", access=CAMPAIGN, write="owner", methods=["POST"])
def change_role(member_id):
    """Give a member another role; a campaign keeps at least one owner."""
    member = _member(member_id)
    role = request.form.get("role", "")
    if role not in ROLES:
        abort(400)
    try:
        accounts.grant(db.session(), member.user, g.campaign, role)
    except accounts.AccountError as exc:
        db.session().rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.team", slug=g.campaign.slug))
    log("member.role", target=member.user.email, detail={"role": role})
    db.session().commit()
    flash(gettext("%(email)s is now %(role)s.", email=member.user.email,
                  role=role_label(role)), "success")
    return redirect(url_for("admin.team", slug=g.campaign.slug))


@route("/c/<slug>/team/<member_id>/remove", access=CAMPAIGN, write="owner", methods=["POST"])
def remove_member(member_id):
    """Take a member out of the campaign's team."""
    member = _member(member_id)
    email = member.user.email
    try:
        accounts.remove_member(db.session(), member)
    except accounts.AccountError as exc:
        db.session().rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.team", slug=g.campaign.slug))
    log("member.remove", target=email)
    db.session().commit()
    flash(gettext("%(email)s is no longer in the team.", email=email), "success")
    return redirect(url_for("admin.team", slug=g.campaign.slug))


@route("/c/<slug>/audit", access=CAMPAIGN, read="viewer", methods=["GET"])
def audit_log():
    """Every action taken on the campaign in the console, newest first; read only."""
    before = request.args.get("before", "")
    entries = audit.entries(db.session(), g.campaign, limit=100,
                            before_id=int(before) if before.isdigit() else None)
    return render("audit.html", entries=entries)
