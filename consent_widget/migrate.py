"""Schema migrations with Alembic, run on the app's own engine (``consent-widget db upgrade``).

Only the commands that change the schema load Alembic. ``current`` and ``head``, which the
readiness probe asks in every app worker, read the version table and the scripts' ``revision``
lines directly: Alembic and what it brings along (Mako, Pygments) would otherwise stay in each
worker's memory for as long as it serves, for the sake of two strings.
"""
from __future__ import annotations

import ast
import os

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSIONS = os.path.join(MIGRATIONS, "versions")
#: Alembic's default version table, which env.py keeps.
VERSION_TABLE = "alembic_version"


def _config(connection=None):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``."""
    from alembic import command
    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision``."""
    from alembic import command
    with engine.begin() as connection:
        command.downgrade(_config(connection), revision)


def revision(engine: Engine, message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    from alembic import command
    with engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        heads = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(heads) > 1:
        # What Alembic's MigrationContext.get_current_revision refuses too.
        raise RuntimeError(f"the table {VERSION_TABLE} holds more than one revision: {heads}")
    return heads[0] if heads else None


def _script_revisions(path: str) -> tuple[str, tuple[str, ...]]:
    # The literals only: executing the script would import Alembic's ``op`` and the models.
    with open(path, encoding="utf-8") as script:
        tree = ast.parse(script.read(), path)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            found[target.id] = ast.literal_eval(value)
    if not isinstance(found.get("revision"), str):
        raise RuntimeError(f"{os.path.basename(path)} declares no revision")
    down = found.get("down_revision")
    return found["revision"], (down,) if isinstance(down, str) else tuple(down or ())


def head() -> str | None:
    """The newest revision the code knows (None before the first migration)."""
    revisions, downs = set(), set()
    for name in os.listdir(VERSIONS):
        # The files Alembic loads as scripts: sources, not __init__ nor editors' lock files.
        if name.endswith(".py") and not name.startswith(("__init__", ".#")):
            revision_id, down_revisions = _script_revisions(os.path.join(VERSIONS, name))
            revisions.add(revision_id)
            downs.update(down_revisions)
    heads = sorted(revisions - downs)
    if len(heads) > 1:
        # Alembic's ScriptDirectory.get_current_head refuses a branched history the same way.
        raise RuntimeError(f"the migrations have more than one head: {heads}")
    return heads[0] if heads else None
