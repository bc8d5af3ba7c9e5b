"""The checks a consent text passes before it is published: what the law needs it to say, and
nothing that ticks a box in advance.

The checks read words, not meaning: they make sure that the facts a person needs to give an
explicit, specific and informed consent are named (GDPR Art. 4(11), 7(2), 9(2)(a), 13, 14),
not that the sentence around them is right; that is for the person publishing it, who sees
every message at once. Each requirement lists the words it accepts in each language; a word
ending in ``*`` stands for any word that begins so (``withdraw*``: withdraw, withdrawn,
withdrawal). Texts are compared without case or accents, so ``Révoquer`` matches ``revoqu*``.
docs/consent-texts.md explains each check and why.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from flask_babel import gettext, lazy_gettext as _l

from .models import NEWSLETTER, SOCIAL_MATCHING, Campaign
from .notices import LOCALES, NETWORK_LABELS, network_label

#: Shortest and longest text accepted, in characters.
MIN_LENGTH, MAX_LENGTH = 20, 2000


@dataclass(frozen=True)
class Problem:
    """Why a text cannot be published: a stable ``code`` and a message for the person."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Requirement:
    """Something a text must say, and the words that say it in each language."""

    code: str
    words: dict[str, tuple[str, ...]]
    message: str  # lazy: "%(words)s" is the list of accepted words


#: What a social matching text must say besides the network and the controller's name.
MATCHING_REQUIREMENTS = (
    Requirement("collected_profile", {
        "en": ("profile*",), "fr": ("profil*",)},
        _l("Say what is collected: the text does not mention the public profile "
           "(accepted words: %(words)s).")),
    Requirement("collected_location", {
        "en": ("location*", "city", "town", "region", "where I live"),
        "fr": ("localisation*", "lieu*", "ville*", "commune*", "région*", "où j’habite")},
        _l("Say what is collected: the text does not mention the location "
           "(accepted words: %(words)s).")),
    Requirement("collected_biography", {
        "en": ("biograph*", "bio", "about me", "description*"),
        "fr": ("biograph*", "bio", "présentation*", "description*")},
        _l("Say what is collected: the text does not mention the biography "
           "(accepted words: %(words)s).")),
    Requirement("withdraw", {
        "en": ("withdraw*", "revok*", "revoc*"),
        "fr": ("retir*", "retrait*", "révoqu*", "révocation*")},
        _l("Say how to withdraw: the text does not say that consent can be withdrawn "
           "(accepted words: %(words)s).")),
    Requirement("any_time", {
        "en": ("any time", "anytime", "at any moment"),
        "fr": ("à tout moment", "à tout instant", "n’importe quand", "en tout temps")},
        _l("Say that withdrawing is possible at any time (accepted words: %(words)s).")),
)

#: What a newsletter text must say besides the controller's name.
NEWSLETTER_REQUIREMENTS = (
    Requirement("unsubscribe", {
        "en": ("unsubscrib*", "opt out", "opt-out", "stop receiving", "withdraw*"),
        "fr": ("désabonn*", "désinscri*", "ne plus recevoir", "retir*")},
        _l("Say how to unsubscribe (accepted words: %(words)s).")),
)

#: Wording that presents a box as ticked already, in any language the console offers.
PRESELECTION_WORDS = (
    "already ticked", "already checked", "already selected", "pre-ticked", "preticked",
    "pre-checked", "prechecked", "pre-selected", "preselected", "ticked for you",
    "by default", "déjà coché*", "déjà sélectionné*", "pré-coché*", "précoché*",
    "présélectionné*", "pré-sélectionné*", "coché pour vous", "par défaut")
#: Glyphs of a ticked box; and the same drawn with brackets, like "[x]" or "(X)".
CHECKED_GLYPHS = "☑☒✓✔✅🗹🗸⊠"
_BRACKETED_TICK = re.compile(r"[\[(]\s*[xX✓✔]\s*[\])]")
#: A tag, comment or processing instruction ("<b", "</", "<!--", "<?"), or a character
#: reference ("&amp;", "&#60;"). A "<" or "&" followed by a space, as in "a < b & c", starts
#: no markup in HTML: it is plain text.
_MARKUP = re.compile(r"<[A-Za-z/!?]|&(?:#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")

#: Targeted advertising, in the folded text (lower case, no accents).
_AD_TARGETING = {
    "en": re.compile(r"\btarget\w*\s+(?:[\w-]+\s+){0,2}(?:ads?|advert\w*)\b"
                     r"|\bad(?:vert\w*)?s?\s+targeting\b|\bmicro-?target\w*"),
    "fr": re.compile(r"\bpub(?:licit\w*|s)?\s+(?:[\w-]+\s+){0,2}cibl\w*"
                     r"|\bciblage\s+(?:[\w-]+\s+){0,2}publicitaire\w*|\bmicro-?cibl\w*"),
}
#: A negation in the same sentence ("This is not consent to targeted advertising").
_NEGATION = {
    "en": re.compile(r"\b(?:not|no|never|nor|neither)\b|n't\b"),
    "fr": re.compile(r"\b(?:ne|pas|aucun\w*|jamais|non|ni)\b|\bn'"),
}
_SENTENCE_END = re.compile(r"[.!?;:\n]+")


def clean(text: str) -> str:
    """A text as it is stored and shown: NFC, each run of spaces and line breaks one space.

    The widget shows a text in one paragraph, where a browser shows any run of white space as
    one space: the text recorded (and hashed) is then the very one on the screen.
    """
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def fold(text: str) -> str:
    """Lower case, without accents, one kind of apostrophe and single spaces: what the word
    checks compare, so that "Révoquer" and "revoquer" are the same word."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().replace("’", "'").replace("ʼ", "'").split())


def _pattern(word: str, *, literal: bool = False) -> re.Pattern:
    """A word of the lists as a pattern on folded text; a final ``*`` allows any ending,
    unless ``literal`` (a name, matched as written)."""
    prefix = word.endswith("*") and not literal
    body = re.escape(fold(word[:-1] if prefix else word))
    return re.compile(r"(?<!\w)" + body + (r"" if prefix else r"(?!\w)"))


def _says(folded: str, words, *, literal: bool = False) -> bool:
    return any(_pattern(word, literal=literal).search(folded) for word in words)


def _shown(words) -> str:
    return ", ".join(words)


def network_names(network: str) -> tuple[str, ...]:
    """The names a text may call a network by: its label and its own name."""
    return tuple(dict.fromkeys((network_label(network), network)))


def check_text(purpose: str, network: str, locale: str, text: str,
               campaign: Campaign) -> list[Problem]:
    """Every reason why ``text`` cannot be the consent text of this box; empty when it can.

    ``text`` is checked as :func:`clean` leaves it; messages are in the current language.
    """
    if locale not in LOCALES:
        raise ValueError(f"unknown locale {locale!r}")
    if purpose not in (NEWSLETTER, SOCIAL_MATCHING):
        raise ValueError(f"unknown purpose {purpose!r}")
    text = clean(text)
    if not text:
        return _form_problems(text)
    problems = _form_problems(text) + _preselection_problems(text)
    folded = fold(text)
    if not _says(folded, (campaign.controller,), literal=True):
        problems.append(Problem("controller", gettext(
            "Say who: the text must name the data controller as the campaign's settings do "
            "(%(controller)s).", controller=campaign.controller)))
    if purpose == SOCIAL_MATCHING:
        problems += _matching_problems(network, folded)
        requirements = MATCHING_REQUIREMENTS
    else:
        requirements = NEWSLETTER_REQUIREMENTS
    for requirement in requirements:
        words = requirement.words[locale]
        if not _says(folded, words):
            problems.append(Problem(requirement.code,
                                    str(requirement.message) % {"words": _shown(words)}))
    problems += _advertising_problems(locale, folded)
    return problems


def _form_problems(text: str) -> list[Problem]:
    problems = []
    if not MIN_LENGTH <= len(text) <= MAX_LENGTH:
        problems.append(Problem("length", gettext(
            "A consent text has between %(min)d and %(max)d characters; this one has %(num)d.",
            min=MIN_LENGTH, max=MAX_LENGTH, num=len(text))))
    if _MARKUP.search(text):
        problems.append(Problem("markup", gettext(
            "The text is plain text: it may not contain HTML or other markup (tags like <b> or "
            "character references like &amp;). The widget shows it exactly as written.")))
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        problems.append(Problem("invisible", gettext(
            "The text contains invisible or direction-changing characters: what a person "
            "reads must be exactly what is recorded.")))
    return problems


def _preselection_problems(text: str) -> list[Problem]:
    problems = []
    if any(glyph in text for glyph in CHECKED_GLYPHS) or _BRACKETED_TICK.search(text):
        problems.append(Problem("checked_glyph", gettext(
            "The text shows a ticked box (like ☑, ✔ or [x]): every box starts unticked, and "
            "the text may not suggest otherwise.")))
    folded = fold(text)
    found = [word for word in PRESELECTION_WORDS if _says(folded, (word,))]
    if found:
        problems.append(Problem("preselection", gettext(
            "The text says that something is chosen in advance (%(words)s): consent is only "
            "what the person ticks themselves.", words=_shown(found))))
    return problems


def _matching_problems(network: str, folded: str) -> list[Problem]:
    problems = []
    names = network_names(network)
    if not _says(folded, names, literal=True):
        problems.append(Problem("network", gettext(
            "Say from which network: the text must name %(network)s.",
            network=network_label(network))))
    others = [label for key, label in NETWORK_LABELS.items()
              if key != network and _says(folded, network_names(key), literal=True)]
    if others:
        problems.append(Problem("other_network", gettext(
            "Each network has a box of its own: this text also names %(networks)s.",
            networks=", ".join(others))))
    return problems


def _advertising_problems(locale: str, folded: str) -> list[Problem]:
    for sentence in _SENTENCE_END.split(folded):
        if _AD_TARGETING[locale].search(sentence) and not _NEGATION[locale].search(sentence):
            return [Problem("advertising", gettext(
                "The text presents this consent as consent to targeted advertising. Targeting "
                "political ads needs a separate consent of its own (Regulation (EU) 2024/900); "
                "a sentence that mentions it must say that this is not such a consent."))]
    return []


def guidance(purpose: str, network: str, campaign: Campaign) -> list[str]:
    """What a text of this box must say and must not, in a few lines for the person writing it."""
    lines = [gettext("Name the data controller as the campaign's settings do: %(controller)s.",
                     controller=campaign.controller)]
    if purpose == SOCIAL_MATCHING:
        lines += [gettext("Name the network: %(network)s, and no other.",
                          network=network_label(network)),
                  gettext("Say what is collected: the public profile, the location and the "
                          "biography."),
                  gettext("Say that consent can be withdrawn at any time.")]
    else:
        lines.append(gettext("Say how to unsubscribe."))
    lines.append(gettext("Write plain text (no HTML), show no ticked box and never say that "
                         "something is chosen in advance or by default."))
    lines.append(gettext("Never present this consent as consent to targeted advertising."))
    lines.append(gettext("Between %(min)d and %(max)d characters.", min=MIN_LENGTH,
                         max=MAX_LENGTH))
    return lines
