"""How many bytes a campaign site's visitors download for the widget, next to other consent tools.

Measures, in one run: the loader (``/embed.js``), the widget page and its CSS and JavaScript, as
the app serves them, raw, gzip (level 9) and brotli (quality 11); then the main distributed
files of tarteaucitron.js, Klaro!, Orejime and vanilla-cookieconsent, fetched from the npm
registry with ``npm pack`` into a temporary folder. Those are cookie banners, a different job,
but they are what a campaign site typically already loads on every page, so they set the scale.

Run: ``make bench`` (or ``.venv/bin/pip install -e '.[bench]'`` then
``.venv/bin/python bench/bench_embed.py``). Needs npm for the comparison; without it, prints
ours only.
"""
from __future__ import annotations

import gzip
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from html import unescape
from pathlib import Path

import brotli

from consent_widget import create_app, db, migrate
from consent_widget.campaigns import create_campaign

LOADER_TARGET_GZIP = 1536
FIRST_LOAD_TARGET_GZIP = 10 * 1024

#: Each tool's files that a page loads at first, from its npm package (French where it has
#: languages, as a French campaign's site would).
OTHERS = {
    "tarteaucitron.js": ("tarteaucitronjs", ["tarteaucitron.min.js",
                                             "lang/tarteaucitron.fr.min.js",
                                             "tarteaucitron.services.min.js",
                                             "css/tarteaucitron.min.css"]),
    "Klaro!": ("klaro", ["dist/klaro.js"]),
    "Orejime": ("orejime", ["dist/orejime-standard-fr.js", "dist/orejime-standard.css"]),
    "vanilla-cookieconsent": ("vanilla-cookieconsent", ["dist/cookieconsent.umd.js",
                                                        "dist/cookieconsent.css"]),
}


def sizes(blobs) -> tuple[int, int, int]:
    """Raw, gzip and brotli bytes of files sent separately (each compressed on its own)."""
    blobs = list(blobs)
    return (sum(len(b) for b in blobs), sum(len(gzip.compress(b, 9)) for b in blobs),
            sum(len(brotli.compress(b, quality=11)) for b in blobs))


def ours(workdir: Path) -> dict:
    """The loader and the widget's first load, as served by the app on a fresh database."""
    app = create_app({"TESTING": True, "SECRET_KEY": "bench-secret-key-not-for-production",
                      "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
                      "BASE_URL": "http://consent.test",
                      "MAIL_URL": f"file://{workdir / 'outbox'}"})
    # The access log would interleave with the table.
    logging.getLogger("consent_widget").setLevel(logging.WARNING)
    with app.app_context():
        migrate.upgrade(db.engine())
        with db.transaction() as session:
            create_campaign(session, "bench", name="Marie 2027",
                            controller="Association Marie 2027",
                            contact_email="dpo@example.org",
                            policy_url="https://example.org/privacy",
                            origins=["https://example.org"], locale="fr")
    client = app.test_client()
    loader = client.get("/embed.js").data
    page = client.get("/w/bench")
    assets = [unescape(url) for url in
              re.findall(r'(?:href|src)="(/w/_static/[^"]+)"', page.get_data(as_text=True))]
    bodies = [client.get(url).data for url in assets]
    with app.app_context():
        db.engine().dispose()
    return {"loader": [loader], "widget page (HTML)": [page.data],
            "widget CSS + JS": bodies, "first load (HTML+CSS+JS)": [page.data, *bodies],
            "first load with loader": [loader, page.data, *bodies]}


def others(workdir: Path) -> dict:
    """The other tools' first-load files, from their npm packages fetched now."""
    if shutil.which("npm") is None:
        print("npm not found: skipping the other tools", file=sys.stderr)
        return {}
    measured = {}
    for label, (package, files) in OTHERS.items():
        out = subprocess.run(["npm", "pack", "--silent", package], cwd=workdir, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(workdir / out) as archive:
            version = re.search(r"-(\d[\w.-]*)\.tgz$", out).group(1)
            measured[f"{label} {version}"] = [
                archive.extractfile(f"package/{name}").read() for name in files]
    return measured


def main() -> None:
    """Measure and print the table."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        mine = ours(workdir)
        theirs = others(workdir)
    first_gzip = sizes(mine["first load (HTML+CSS+JS)"])[1]
    print(f"{'what':<36}{'files':>6}{'raw':>10}{'gzip':>9}{'brotli':>9}{'gzip vs ours':>14}")
    for label, blobs in [*mine.items(), *theirs.items()]:
        raw, gz, br = sizes(blobs)
        ratio = f"{gz / first_gzip:.1f}x" if label in theirs else ""
        print(f"{label:<36}{len(blobs):>6}{raw:>10,}{gz:>9,}{br:>9,}{ratio:>14}")
    loader_gzip = sizes(mine["loader"])[1]
    print()
    print(f"loader: {loader_gzip:,} B gzip, target {LOADER_TARGET_GZIP:,} B: "
          f"{'met' if loader_gzip <= LOADER_TARGET_GZIP else 'MISSED'} "
          f"({loader_gzip / LOADER_TARGET_GZIP:.0%} of it)")
    print(f"first load: {first_gzip:,} B gzip, target {FIRST_LOAD_TARGET_GZIP:,} B: "
          f"{'met' if first_gzip <= FIRST_LOAD_TARGET_GZIP else 'MISSED'} "
          f"({first_gzip / FIRST_LOAD_TARGET_GZIP:.0%} of it)")
    print("(\"gzip vs ours\" compares with our first load without the loader; each file is "
          "compressed on its own, as a server sends it.)")


if __name__ == "__main__":
    main()
