"""The OpenAPI 3.1 document of the platform API, served at ``/api/v1/openapi.json``.

Written by hand from the views in :mod:`consent_widget.api`; ``tests/test_openapi.py`` validates
it and runs schemathesis against the app, so a view and its description cannot drift apart.
"""
from __future__ import annotations

from . import batch, events
from .models import DEFAULT_NETWORKS, EVENT_TYPES, PURPOSES

STATUSES = [*EVENT_TYPES, "unknown"]

_NULLABLE_STRING = {"type": ["string", "null"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


_AUTH_ERRORS = {
    "401": {**_error("Missing, unknown, expired or revoked bearer token."),
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
    "403": _error("The token lacks the scope this operation needs."),
}
_BODY_ERRORS = {
    "400": _error("Malformed question: `invalid_json`, `invalid_purpose`, `invalid_network`, "
                  "`invalid_subject`, `invalid_email`, `invalid_batch`."),
    "413": _error("Body too large, or more than 10,000 entries (`batch_too_large`)."),
    "415": _error("The body is not JSON (`Content-Type: application/json`)."),
}

_ANSWER_FIELDS = {
    "allowed": {"type": "boolean",
                "description": "True only for a confirmed, unwithdrawn, unexpired consent to "
                               "exactly this purpose (and network)."},
    "status": {"enum": STATUSES},
    "purpose": {"enum": list(PURPOSES)},
    "network": {"type": ["string", "null"]},
    "subject_id": {**_NULLABLE_STRING, "description": "Opaque id of the person; null if unknown."},
    "receipt_id": _NULLABLE_STRING,
    "given_at": {"type": ["string", "null"], "format": "date-time"},
    "notice_version": {"type": ["integer", "null"]},
}

_QUESTION = {
    "purpose": {"enum": list(PURPOSES)},
    "network": {"enum": list(DEFAULT_NETWORKS),
                "description": "Required for social_matching, absent for newsletter."},
}

_SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "message"],
              "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
    "CheckRequest": {
        "type": "object", "required": ["purpose"],
        "description": "Exactly one of `email` and `subject_id`.",
        "properties": {**_QUESTION, "email": {"type": "string", "maxLength": 254},
                       "subject_id": {"type": "string", "minLength": 1, "maxLength": 40}}},
    "Answer": {"type": "object", "required": list(_ANSWER_FIELDS),
               "properties": dict(_ANSWER_FIELDS)},
    "CheckResponse": {
        "type": "object", "required": [*_ANSWER_FIELDS, "decision"],
        "properties": {**_ANSWER_FIELDS,
                       "decision": {"type": "string",
                                    "description": "JWS, typ consent-decision+jwt, EdDSA, valid "
                                                   "at most 5 minutes: this answer, signed."}}},
    "BatchRequest": {
        "type": "object", "required": ["purpose"],
        "description": f"Exactly one of `emails` and `subject_ids`, 1 to {batch.MAX_ENTRIES} "
                       "entries.",
        "properties": {**_QUESTION,
                       "emails": {"type": "array", "minItems": 1, "maxItems": batch.MAX_ENTRIES,
                                  "items": {"type": "string", "maxLength": 254}},
                       "subject_ids": {"type": "array", "minItems": 1,
                                       "maxItems": batch.MAX_ENTRIES,
                                       "items": {"type": "string", "minLength": 1,
                                                 "maxLength": 40}}}},
    "BatchResponse": {
        "type": "object", "required": ["results", "decision"],
        "properties": {
            "results": {"type": "array", "items": _ref("Answer"),
                        "description": "One answer per entry, in the order asked."},
            "decision": {"type": "string",
                         "description": "One JWS (typ consent-decision+jwt) for the whole batch: "
                                        "`request_sha256` (SHA-256 of the request body as sent), "
                                        "`results_sha256` (SHA-256 of the canonical JSON of "
                                        "`results`), `count`, `allowed_count`."}}},
    "PurgeEntry": {
        "type": "object", "required": ["index", "status", "subject_id"],
        "properties": {"index": {"type": "integer", "minimum": 0},
                       "email": {"type": "string"}, "subject_id": _NULLABLE_STRING,
                       "status": {"enum": STATUSES}}},
    "PurgeResponse": {
        "type": "object", "required": ["purpose", "network", "checked", "purge", "statement"],
        "properties": {
            "purpose": {"enum": list(PURPOSES)}, "network": {"type": ["string", "null"]},
            "checked": {"type": "integer"},
            "purge": {"type": "array", "items": _ref("PurgeEntry"),
                      "description": "The entries without valid consent, in the order asked."},
            "statement": {"type": "string",
                          "description": "JWS, typ purge-statement+jwt, EdDSA: the answer signed "
                                         "(`request_sha256`, `purge_sha256`, `purge_count`, "
                                         "`statement`)."}}},
    "EventData": {
        "type": "object",
        "required": ["campaign", "subject_id", "email", "purpose", "network", "status",
                     "receipt_id"],
        "properties": {"campaign": {"type": "string"}, "subject_id": {"type": "string"},
                       "email": _NULLABLE_STRING, "purpose": _NULLABLE_STRING,
                       "network": _NULLABLE_STRING, "status": _NULLABLE_STRING,
                       "receipt_id": _NULLABLE_STRING}},
    "Event": {
        "type": "object", "required": ["id", "cursor", "type", "timestamp", "data"],
        "properties": {"id": {"type": "string", "description": "Also its webhook-id."},
                       "cursor": {"type": "string"},
                       "type": {"enum": sorted(events.EVENT_TYPES)},
                       "timestamp": {"type": "string", "format": "date-time"},
                       "data": _ref("EventData")}},
    "EventPage": {
        "type": "object", "required": ["events", "next", "has_more"],
        "properties": {"events": {"type": "array", "items": _ref("Event")},
                       "next": {"type": "string",
                                "description": "Pass as `after` for the next page."},
                       "has_more": {"type": "boolean"}}},
    "Receipt": {
        "type": "object", "required": ["receipt_id", "jws", "claims", "supersedes", "issued_at"],
        "properties": {"receipt_id": {"type": "string"}, "jws": {"type": "string"},
                       "claims": {"type": "object"}, "supersedes": _NULLABLE_STRING,
                       "issued_at": {"type": "string", "format": "date-time"}}},
}


def _post(summary: str, request: str, response: str, description: str) -> dict:
    return {"post": {
        "summary": summary, "description": description,
        "security": [{"platform": ["consents:check"]}],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {"200": _json(_ref(response), "The answer."), **_BODY_ERRORS,
                      **_AUTH_ERRORS}}}


def document(base_url: str) -> dict:
    """The OpenAPI 3.1 document, with ``base_url`` as the server and token URL."""
    base = base_url.rstrip("/")
    return {
        "openapi": "3.1.0",
        "info": {"title": "consent_widget platform API", "version": "1.0.0",
                 "description": "What a campaign's CRM asks before matching anyone, and how it "
                                "learns of withdrawals. Every answer concerns only the campaign "
                                "of the bearer token."},
        "servers": [{"url": base}],
        "paths": {
            "/api/v1/consents/check": _post(
                "Check one consent", "CheckRequest", "CheckResponse",
                "May the platform process this person's data for this purpose and network? "
                "An unknown person is `status: unknown`, not an error."),
            "/api/v1/consents/check-batch": _post(
                "Check up to 10,000 consents", "BatchRequest", "BatchResponse",
                "The same answers as one check each, in order, under one signed decision."),
            "/api/v1/consents/purge-audit": _post(
                "Which matched people must be purged", "BatchRequest", "PurgeResponse",
                "Submit the people you hold matched data about; get back those without valid "
                "consent, with a signed statement."),
            "/api/v1/events": {"get": {
                "summary": "Consent events after a cursor",
                "description": "`consent.given`, `consent.withdrawn` and `consent.expired` in "
                               "ledger order. Cursors never change meaning.",
                "security": [{"platform": ["events:read"]}],
                "parameters": [
                    {"name": "after", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9]{1,18}$", "default": "0"}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 100}}],
                "responses": {"200": _json(_ref("EventPage"), "A page of events."),
                              "400": _error("`invalid_cursor` or `invalid_limit`."),
                              **_AUTH_ERRORS}}},
            "/api/v1/receipts/{receipt_id}": {"get": {
                "summary": "A receipt of this campaign",
                "security": [{"platform": ["receipts:read"]}],
                "parameters": [{"name": "receipt_id", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 36,
                                           "description": "A UUID."}}],
                "responses": {"200": _json(_ref("Receipt"), "The receipt."),
                              "404": _error("No such receipt in this campaign."),
                              **_AUTH_ERRORS}}},
            "/api/v1/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")}}},
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"platform": {
                "type": "oauth2",
                "description": "Client credentials (RFC 6749 §4.4), HTTP Basic or form post.",
                "flows": {"clientCredentials": {
                    "tokenUrl": base + "/oauth/token",
                    "scopes": {"consents:check": "check consents",
                               "events:read": "read the event feed",
                               "receipts:read": "read receipts"}}}}},
        },
    }
