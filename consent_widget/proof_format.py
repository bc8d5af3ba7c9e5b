"""The names of a proof export's format and files (docs/proof-export.md), shared by the writer
and the verifier, which needs nothing else of the service."""

FORMAT = "consent_widget-proof-export"
VERSION = 1
EVENTS, RECEIPTS, NOTICES, JWKS, MANIFEST = ("events.jsonl", "receipts.jsonl", "notices.jsonl",
                                             "jwks.json", "manifest.json")
