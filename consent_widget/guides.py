"""The site-builder guides of the ``embed/`` folder, rendered to HTML for the console.

The guides are Markdown written for the repository; the console shows them under its own
headings. They are rendered with markdown-it-py in its safe preset: raw HTML in them is
shown as text, never passed through, and links to ``javascript:`` and the like are dropped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

from .embed import EMBED_DIR

#: The guides shown, in order: (key, file in ``embed/``).
GUIDES = (("plain-html", "plain-html.md"), ("wordpress", "wordpress.md"),
          ("nationbuilder", "nationbuilder.md"), ("wix", "wix.md"),
          ("squarespace", "squarespace.md"))
#: Levels the guides' headings move down by: their ``#`` title becomes the page's ``<h3>``.
HEADING_SHIFT = 2

_markdown = MarkdownIt("js-default").disable("image")


@dataclass(frozen=True)
class Guide:
    """One builder's guide: its key, its title (the Markdown's first heading) and its body."""

    key: str
    title: str
    html: Markup


def render(source: str, key: str = "") -> Guide:
    """A guide's title and body from its Markdown; the title heading is not in the body."""
    tokens = _markdown.parse(source)
    title = key
    if len(tokens) >= 3 and tokens[0].type == "heading_open" and tokens[0].tag == "h1":
        title = tokens[1].content
        tokens = tokens[3:]
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            level = min(6, int(token.tag[1]) + HEADING_SHIFT)
            token.tag = f"h{level}"
    body = _markdown.renderer.render(tokens, _markdown.options, {})
    # markdown-it escapes every character of the source that it does not turn into markup.
    return Guide(key, title, Markup(body))


@lru_cache(maxsize=16)
def _rendered(path: str, key: str, mtime_ns: int) -> Guide:
    with open(path, encoding="utf-8") as handle:
        return render(handle.read(), key)


def guides() -> list[Guide]:
    """Every guide of ``embed/``, rendered once per version of its file; a guide whose file
    is missing is left out."""
    found = []
    for key, filename in GUIDES:
        path = os.path.join(EMBED_DIR, filename)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            continue
        found.append(_rendered(path, key, mtime))
    return found
