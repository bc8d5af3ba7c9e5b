"""ORM objects made from rows read on the driver's cursor, as the ORM would have loaded them.

The hot paths read a few rows each (the campaign of a widget request, the signup of a
confirmation link). Reading them on the driver's cursor (:func:`consent_widget.db.driver_rows`)
costs a fraction of the ORM's execution and loading; the objects are then made here, persistent
in the session with every column loaded and no change pending, so that everything downstream
sees what an ORM query would have given it.
"""
from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key


def columns(model, prefix: str = "") -> list:
    """Every mapped column of ``model``, labelled ``prefix`` + its attribute's name, for a
    ``select`` whose rows :func:`instance` turns back into objects."""
    return [prop.columns[0].label(prefix + prop.key) for prop in inspect(model).column_attrs]


def held(session: Session, model, row_id) -> bool:
    """Whether ``session`` holds the object of ``model`` with this primary key already; a
    caller then lets the ORM read it, which decides what becomes of that object."""
    return identity_key(model, row_id) in session.identity_map


def instance(session: Session, model, values: dict, prefix: str = ""):
    """The object of ``model`` with ``values`` (a row of :func:`columns`) as its loaded state,
    made persistent in ``session``, which must not hold it already (see :func:`held`)."""
    obj = detached(model, values, prefix)  # as if loaded: the values are the committed ones
    session.add(obj)
    return obj


def detached(model, values: dict, prefix: str = ""):
    """The object of ``model`` with ``values`` (a row of :func:`columns`) as its loaded state,
    detached: in no session, every column loaded, as if its session had been closed. For a
    row read outside any session (see :func:`consent_widget.campaigns.find`)."""
    mapper = inspect(model)
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update({prop.key: values[prefix + prop.key] for prop in mapper.column_attrs})
    make_transient_to_detached(obj)
    return obj


def transient(model, values: dict):
    """An object of ``model`` holding ``values``, in no session and with no identity, made
    without the ORM's attribute events: the copy returned of a row just written on the
    driver (a signup's subject, its signup, an outbox message), which the constructor, setting
    each attribute through its instrumentation, would cost several times over."""
    obj = inspect(model).class_manager.new_instance()
    obj.__dict__.update(values)
    return obj


def flush_pending(session: Session) -> None:
    """Flush the session's pending changes first, as an ORM query would (autoflush), so a
    driver-level read finds an object added just now."""
    if session.autoflush and (session.new or session.dirty or session.deleted):
        session.flush()


