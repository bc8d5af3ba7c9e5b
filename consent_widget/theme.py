"""A campaign's look: accent colour, font stack, corner radius and light or dark scheme.

A theme only ever sets four CSS custom properties from strictly validated values, so it cannot
inject CSS: it can change how the form looks, never pre-tick a box, hide a notice or the
withdrawal text. The properties go into a small ``<style>`` element that the page's
Content-Security-Policy allows by its SHA-256 hash, so no other inline style is ever allowed.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

#: Font stacks a campaign may choose from: fonts installed on people's devices only, so the
#: widget never loads a font from anywhere.
FONT_STACKS = {
    "system": 'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif',
    "humanist": 'Seravek,"Gill Sans Nova",Ubuntu,Calibri,"DejaVu Sans",sans-serif',
    "geometric": 'Avenir,Montserrat,Corbel,"URW Gothic",sans-serif',
    "serif": 'Charter,"Bitstream Charter","Sitka Text",Cambria,Georgia,serif',
}
SCHEMES = ("auto", "light", "dark")
MAX_RADIUS = 16
DEFAULT_ACCENT = "#1f4fbf"
#: The page backgrounds of the light and dark palettes in widget.css.
LIGHT_BACKGROUND, DARK_BACKGROUND = "#ffffff", "#16161a"
#: WCAG 2.2 AA contrast for text: the accent colours links and the button's background.
MIN_CONTRAST = 4.5

_HEX = re.compile(r"#[0-9a-f]{6}")
#: The campaign columns a theme is made of.
COLUMNS = ("theme_accent", "theme_font", "theme_radius", "theme_scheme")


class InvalidTheme(ValueError):
    """A theme setting is not acceptable; the message says which and why."""


def _luminance(colour: str) -> float:
    """Relative luminance of ``#rrggbb`` (WCAG 2.2 definition)."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two ``#rrggbb`` colours, from 1 to 21."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_on(colour: str) -> str:
    """White or near-black, whichever reads better on ``colour`` (the button's label)."""
    return "#ffffff" if contrast(colour, "#ffffff") >= contrast(colour, "#0b0b10") else "#0b0b10"


def validate(accent: str = "", font: str = "system", radius: int = 4,
             scheme: str = "auto") -> dict:
    """The theme columns of a campaign after checking each value; raise InvalidTheme otherwise.

    The accent must read at AA contrast on the background it is shown on: white for ``light``
    and ``auto`` (whose dark variant keeps the default dark accent), the dark background for
    ``dark``.
    """
    accent = (accent or "").strip().lower()
    if accent and not _HEX.fullmatch(accent):
        raise InvalidTheme(f"the accent must be a colour written #rrggbb, not {accent!r}")
    if font not in FONT_STACKS:
        raise InvalidTheme(f"the font must be one of {', '.join(FONT_STACKS)}")
    if not isinstance(radius, int) or not 0 <= radius <= MAX_RADIUS:
        raise InvalidTheme(f"the radius must be a whole number of pixels from 0 to {MAX_RADIUS}")
    if scheme not in SCHEMES:
        raise InvalidTheme(f"the scheme must be one of {', '.join(SCHEMES)}")
    if accent:
        background = DARK_BACKGROUND if scheme == "dark" else LIGHT_BACKGROUND
        ratio = contrast(accent, background)
        if ratio < MIN_CONTRAST:
            raise InvalidTheme(f"the accent {accent} has a contrast of {ratio:.2f}:1 on the "
                               f"{'dark' if scheme == 'dark' else 'white'} background; at least "
                               f"{MIN_CONTRAST}:1 is needed to stay readable")
    return {"theme_accent": accent, "theme_font": font, "theme_radius": radius,
            "theme_scheme": scheme}


def change(campaign, *, accent: str | None = None, font: str | None = None,
           radius: int | None = None, scheme: str | None = None) -> dict:
    """Set the look values given (None: keep the campaign's) on ``campaign``, after checking
    the resulting four together: a new scheme must still suit the accent kept, and the other
    way round. Raises InvalidTheme and changes nothing when they do not; returns the columns."""
    current = {"accent": campaign.theme_accent or "", "font": campaign.theme_font or "system",
               "radius": campaign.theme_radius if campaign.theme_radius is not None else 4,
               "scheme": campaign.theme_scheme or "auto"}
    given = {"accent": accent, "font": font, "radius": radius, "scheme": scheme}
    values = validate(**{key: current[key] if value is None else value
                         for key, value in given.items()})
    for column, value in values.items():
        setattr(campaign, column, value)
    return values


@dataclass(frozen=True)
class Theme:
    """What the page needs to apply a campaign's theme: the scheme and the style rule."""

    scheme: str
    css: str

    @property
    def csp_hash(self) -> str:
        """The CSP source that allows exactly this ``<style>`` content and no other."""
        digest = hashlib.sha256(self.css.encode("utf-8")).digest()
        return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


#: The default look, which widget.css already draws without any <style> element.
_DEFAULT = validate()


def of(campaign) -> Theme:
    """The theme of ``campaign``, re-validated so that a value edited in the database cannot
    reach the page unchecked (it falls back to the default theme instead)."""
    try:
        values = validate(campaign.theme_accent or "", campaign.theme_font or "system",
                          campaign.theme_radius if campaign.theme_radius is not None else 4,
                          campaign.theme_scheme or "auto")
    except InvalidTheme:
        values = _DEFAULT
    if values == _DEFAULT:
        # The default look is all in widget.css: no <style> element at all.
        return Theme(scheme="auto", css="")
    properties = [f"--font:{FONT_STACKS[values['theme_font']]}",
                  f"--radius:{values['theme_radius']}px"]
    accent = values["theme_accent"]
    colours = ([f"--accent:{accent}", f"--focus:{accent}", f"--accent-text:{text_on(accent)}"]
               if accent else [])
    # The attribute selector outweighs the palettes of widget.css (:root[data-scheme=...]).
    rule = ":root[data-scheme]{%s}"
    if values["theme_scheme"] == "auto" and colours:
        # In "auto", the campaign's accent is for the light palette; the dark one keeps its own.
        css = rule % ";".join(properties) + (
            "@media (prefers-color-scheme:light){" + rule % ";".join(colours) + "}")
    else:
        css = rule % ";".join(properties + colours)
    return Theme(scheme=values["theme_scheme"], css=css)
