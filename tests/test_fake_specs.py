"""The referee the platform fakes answer to (tests/fakes/specs.py): a request the published spec refuses fails, and
one it allows passes; for query, path and header parameters, bodies by content type, and security with scopes; on
an OpenAPI 3.0 document (X) and a 3.1 one (Mastodon)."""

import pytest
from fakes.specs import SpecViolation, mastodon_api, x_api
from refdata import requires_reference_data

pytestmark = requires_reference_data

X_WRITE = ("oauth2", ("tweet.read", "tweet.write", "users.read"))


def test_an_x_body_is_checked_against_the_operation_schema_and_content_type() -> None:
    spec = x_api()
    spec.check_request("POST", "/2/tweets", {}, body={"text": "hello", "reply_settings": "following"},
                       content_type="application/json", auth=X_WRITE)
    with pytest.raises(SpecViolation, match="body"):
        spec.check_request("POST", "/2/tweets", {}, body={"text": "hi", "reply_settings": "everybody"},
                           content_type="application/json")
    with pytest.raises(SpecViolation, match="no application/x-www-form-urlencoded body"):
        spec.check_request("POST", "/2/tweets", {}, body={"text": "hi"}, content_type="application/x-www-form-urlencoded")
    with pytest.raises(SpecViolation, match="required"):
        spec.check_request("POST", "/2/tweets", {}, body=None)
    with pytest.raises(SpecViolation, match="takes no request body"):
        spec.check_request("GET", "/2/users/me", {}, body={"a": 1}, content_type="application/json")


def test_x_path_parameters_and_security_scopes_are_checked() -> None:
    spec = x_api()
    spec.check_request("DELETE", "/2/tweets/1346889436626259968", {}, auth=X_WRITE)
    with pytest.raises(SpecViolation, match="path"):
        spec.check_request("DELETE", "/2/tweets/not-an-id", {})
    with pytest.raises(SpecViolation, match="requires credentials"):
        spec.check_request("POST", "/2/tweets", {}, auth=None)
    with pytest.raises(SpecViolation, match="meet none"):  # media.write is not tweet.write
        spec.check_request("POST", "/2/tweets", {}, auth=("oauth2", ("media.write",)))
    spec.check_request("POST", "/2/media/upload/initialize", {}, auth=("oauth2", ("media.write",)))


def test_a_mastodon_request_is_checked_against_the_3_1_document() -> None:
    spec = mastodon_api()
    spec.check_request("POST", "/api/v1/statuses", {}, headers={"Idempotency-Key": "k-1"},
                       body={"status": "hello", "visibility": "unlisted"}, content_type="application/json",
                       auth=("oauth2", ("write:statuses",)))
    with pytest.raises(SpecViolation, match="body"):
        spec.check_request("POST", "/api/v1/statuses", {}, body={"status": "hi", "visibility": "everyone"},
                           content_type="application/json")
    with pytest.raises(SpecViolation, match="Idempotency-Key"):  # the erratum: a string, and not an empty one
        spec.check_request("POST", "/api/v1/statuses", {}, headers={"Idempotency-Key": ""})
    with pytest.raises(SpecViolation, match="meet none"):
        spec.check_request("POST", "/api/v2/media", {}, auth=("oauth2", ("read",)))
    spec.check_request("POST", "/api/v2/media", {}, body={"file": "<file a.png (3 bytes)>", "description": "alt"},
                       content_type="multipart/form-data", auth=("oauth2", ("write:media",)))
    spec.check_response("GET", "/api/v1/media/abc", 404, {"error": "Record not found"})


def test_a_parent_scope_grants_its_granular_scopes() -> None:
    mastodon_api().check_request("POST", "/api/v1/statuses", {}, auth=("oauth2", ("read", "write")))
    with pytest.raises(SpecViolation, match="meet none"):
        mastodon_api().check_request("POST", "/api/v1/statuses", {}, auth=("oauth2", ("read",)))
