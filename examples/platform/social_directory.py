"""A FAKE social directory: a test double standing in for the social networks' lookup APIs.

Nothing here talks to Facebook, LinkedIn or anyone else. It invents a deterministic "public
profile" from the address, so the demo CRM has something to store, show and delete. A real
platform would call the network's API at this point, and only after consent_widget allowed it.
"""
from __future__ import annotations

import hashlib

_CITIES = ["Lyon", "Lille", "Nantes", "Bordeaux", "Marseille", "Rennes", "Toulouse", "Dijon"]
_BIOS = ["Bénévole associatif", "Enseignante", "Développeur", "Infirmière", "Étudiant",
         "Artisan", "Retraitée", "Journaliste"]


def lookup(email: str, network: str) -> dict:
    """The invented public profile of ``email`` on ``network`` (always found, always fake)."""
    digest = hashlib.sha256(f"{network}:{email.lower()}".encode()).digest()
    handle = email.split("@")[0].lower()
    return {"network": network, "fake": True,
            "profile_url": f"https://{network}.invalid/{handle}",
            "location": _CITIES[digest[0] % len(_CITIES)],
            "biography": _BIOS[digest[1] % len(_BIOS)]}
