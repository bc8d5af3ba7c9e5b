"""A campaign's theme: strict values, readable colours, and CSS that only sets custom properties."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from consent_widget import theme


def test_contrast_follows_the_wcag_formula():
    assert theme.contrast("#000000", "#ffffff") == pytest.approx(21)
    assert theme.contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert theme.contrast("#1f4fbf", "#1f4fbf") == pytest.approx(1)


@pytest.mark.parametrize("accent, label", [("#1f4fbf", "#ffffff"), ("#8fb0ff", "#0b0b10")])
def test_the_button_label_takes_the_more_readable_of_white_and_near_black(accent, label):
    assert theme.text_on(accent) == label


def test_the_default_palettes_accents_pass_the_rule_they_impose():
    theme.validate(theme.DEFAULT_ACCENT, scheme="light")
    theme.validate("#8fb0ff", scheme="dark")


@pytest.mark.parametrize("scheme", ["auto", "light", "dark"])
def test_the_css_of_any_valid_theme_only_sets_custom_properties(scheme):
    accent = "#8fb0ff" if scheme == "dark" else "#7a1f5c"
    campaign = SimpleNamespace(**theme.validate(accent, "humanist", 16, scheme))
    css = theme.of(campaign).css
    declarations = re.findall(r"[{;]([^{};]+)(?=[;}])", css)
    assert declarations and all(d.startswith("--") for d in declarations)
    assert "<" not in css and "!important" not in css
