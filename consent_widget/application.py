"""The Flask application class of the service."""
from __future__ import annotations

from typing import Any, Callable

from flask import Flask

#: Views, hooks and handlers of one app are a few hundred functions. Past this many, a function
#: is worked out on each call and not kept: functions made afresh on each request (an
#: ``after_this_request`` callback) would otherwise fill the cache with ones never seen again.
_SYNC_CACHE_MAX = 512


class ConsentApp(Flask):
    """Flask, deciding once per function whether a view or hook must be run as a coroutine.

    Flask asks :meth:`ensure_sync` about each view and each request hook on every request,
    and the answer (``inspect.iscoroutinefunction``) never changes for a function: asked
    eight times a request, it cost a check as much as counting its rate limit.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synchronous: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` as Flask would run it (wrapped when it is a coroutine function), worked
        out the first time this app is asked about ``func``."""
        try:
            found = self._synchronous.get(func)
        except TypeError:  # a callable that cannot be a key (an unhashable instance)
            return super().ensure_sync(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._synchronous) < _SYNC_CACHE_MAX:
                self._synchronous[func] = found
        return found
