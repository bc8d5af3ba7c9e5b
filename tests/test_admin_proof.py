"""Proof for auditors in the console: an export runs in the background, shows its progress,
and its archive downloads and verifies on its own; the compliance summary shows the texts and
the chain's last verification."""
from __future__ import annotations

import io
import re
import time

from sqlalchemy import select

from consent_widget import db, proof_verify
from consent_widget.models import LedgerCheck, ProofJob

from console import console, post
from helpers import give


def _finished(app, timeout: float = 30) -> ProofJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            job = db.session().scalars(select(ProofJob)).first()
            if job is not None and job.status in ("done", "failed"):
                return job
        time.sleep(0.1)
    raise AssertionError("the export did not finish")


def test_an_export_started_in_the_console_downloads_and_verifies(app, campaign, tmp_path):
    give(app, "demo", "ana@marie2027.test", newsletter=True, networks=["facebook"])
    app.instance_path = str(tmp_path)
    owner = console(app, "owner@marie2027.test", slug="demo")
    assert post(owner, "/admin/c/demo/proof/exports").status_code == 302
    job = _finished(app)
    assert job.status == "done", job.error
    page = owner.get("/admin/c/demo/proof?lang=en").get_data(as_text=True)
    assert job.result["head"] in page and 'http-equiv="refresh"' not in page
    link = re.search(r'href="(/admin/c/demo/proof/exports/[^"]+\.zip)"', page).group(1)
    archive = tmp_path / "downloaded.zip"
    archive.write_bytes(owner.get(link).get_data())
    report = proof_verify.verify_export(archive)
    assert report.ok and report.events == job.result["events"] == job.done
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    assert viewer.get(link).status_code == 403
    assert post(viewer, "/admin/c/demo/proof/exports").status_code == 403


def test_the_compliance_summary_shows_the_words_asked_and_the_last_verification(app, campaign):
    give(app, "demo", "ana@marie2027.test", newsletter=True)
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    page = viewer.get("/admin/c/demo/compliance?lang=en").get_data(as_text=True)
    assert "Not verified yet." in page and "Send me the newsletter of Marie 2027" in page
    assert post(viewer, "/admin/c/demo/compliance/verify").status_code == 302
    with app.app_context():
        check = db.session().scalars(select(LedgerCheck)).one()
        assert check.ok and check.events > 0
    page = viewer.get("/admin/c/demo/compliance?lang=en").get_data(as_text=True)
    assert "the chain verifies" in page and check.head in page
