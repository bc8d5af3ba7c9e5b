"""The OpenAPI document: valid OpenAPI 3.1, and true of the running app (schemathesis)."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from conftest import run_json
from helpers import give

#: Checks that hold for every request schemathesis makes, valid or not: no 5xx, and every answer
#: (status, content type, body) is one the document describes.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: A few examples per operation and mode keep the suite quick; the checks are what matter.
EXAMPLES = 8


@pytest.fixture
def token(client, runner, campaign):
    """A bearer token of a client of the ``demo`` campaign."""
    platform = run_json(runner, "client", "create", "demo")
    return client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": platform["client_id"],
        "client_secret": platform["client_secret"]}).json["access_token"]


def test_the_document_is_valid_openapi_3_1(client):
    document = client.get("/api/v1/openapi.json").json
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "http://consent.test"}]


def test_every_api_route_is_documented_and_nothing_else(app, client):
    documented = set(client.get("/api/v1/openapi.json").json["paths"])
    routes = {rule.rule.replace("<receipt_id>", "{receipt_id}")
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")}
    assert documented == routes


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_5xx_and_no_mismatch(app, token, mode):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5  # schemathesis leaves out the document's own route
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case):
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS)

        exercise()


def test_the_reference_page_documents_every_operation_and_event(client):
    from pathlib import Path

    from consent_widget import events
    reference = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    for path, operations in client.get("/api/v1/openapi.json").json["paths"].items():
        for method in operations:
            assert f"## {method.upper()} {path}\n" in reference, (method, path)
    for name, event_class in events.EVENT_TYPES.items():
        assert f"`{name}`" in reference, name
        assert event_class.__doc__ and name in event_class.__doc__, name
