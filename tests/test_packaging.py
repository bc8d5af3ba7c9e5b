"""The package data setup.cfg declares covers every file the app reads from its package, so that
an installed wheel, not only a checkout, has its templates, guides, assets and translations."""
from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "consent_widget"


def declared_patterns() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["options.package_data"]["consent_widget"].split()


def test_every_data_file_of_the_package_is_declared():
    # setuptools matches each pattern as a glob from the package's folder ("*" within a folder).
    declared = {path for pattern in declared_patterns() for path in PACKAGE.glob(pattern)}
    # The catalogue template (.pot) is read by the translators' tools only, never by the app.
    data = {path for path in PACKAGE.rglob("*") if path.is_file()
            and path.suffix not in (".py", ".pyc", ".pot") and "__pycache__" not in path.parts}
    assert data - declared == set()


def test_the_app_reads_its_templates_and_guides_from_the_package():
    from consent_widget import create_app, embed
    app = create_app({"SECRET_KEY": "packaging-test-key", "DATABASE_URL": "sqlite://"})
    assert Path(app.jinja_loader.searchpath[0]).resolve() == PACKAGE / "templates"
    assert Path(embed.EMBED_DIR).resolve() == PACKAGE / "embed"
