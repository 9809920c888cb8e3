"""A real S3-compatible server on loopback for the S3 media host's tests: moto in server mode (werkzeug, a thread of
the test process, 127.0.0.1 on a free port), behind a SigV4 check.

moto accepts any signature and never expires a presigned URL, so every signed request goes through `SigV4Check`
first: it recomputes the AWS Signature Version 4 (written here from the AWS spec, independently of botocore, which the
product signs with) for header-signed requests (our PUT/HEAD) and presigned URLs, and refuses an expired presigned
URL or a wrong signature with S3's own 403 error documents (AccessDenied "Request has expired",
SignatureDoesNotMatch). Unsigned requests (the test creating its bucket) pass through.

Without moto the tests skip, unless OMNIPOST_REQUIRE_S3 is set (scripts/test.sh, CI), when they fail.
Import the fixture into a test module: `from s3server import s3  # noqa: F401`.
"""

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest

REQUIRED = bool(os.environ.get("OMNIPOST_REQUIRE_S3"))
ACCESS_KEY_ID = "AKIAOMNIPOSTTEST0001"
SECRET_ACCESS_KEY = "omnipost-test-secret/0123456789abcdefghijklmnop"
REGION = "us-east-1"
BUCKET = "omnipost-media-test"

StartResponse = Callable[..., Any]


def _deny(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'.encode()
    start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _signature(secret: str, date: str, region: str, string_to_sign: str) -> str:
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), region), "s3"), "aws4_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


class SigV4Check:
    """WSGI middleware: verify SigV4 (header or presigned query) before moto sees a signed request."""

    def __init__(self, app: Any, secrets: dict[str, str]) -> None:
        self.app = app
        self.secrets = secrets
        self.refused: list[str] = []  # error codes answered, for the tests

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        params = dict(query)
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if "X-Amz-Signature" in params:
            refusal = self._presigned(environ, query, params)
        elif authorization.startswith("AWS4-HMAC-SHA256 "):
            refusal = self._header(environ, query, authorization)
        else:
            return self.app(environ, start_response)
        if refusal is not None:
            self.refused.append(refusal[0])
            return _deny(start_response, *refusal)
        return self.app(environ, start_response)

    def _canonical(self, environ: dict[str, Any], query: list[tuple[str, str]], signed: list[str], payload: str) -> str:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
        path = raw.split("?", 1)[0]
        headers = "".join(f"{name}:{self._header_value(environ, name)}\n" for name in signed)
        pairs = [(k, v) for k, v in query if k != "X-Amz-Signature"]
        return "\n".join([environ["REQUEST_METHOD"], path, _canonical_query(pairs), headers, ";".join(signed), payload])

    @staticmethod
    def _header_value(environ: dict[str, Any], name: str) -> str:
        if name == "host":
            return str(environ.get("HTTP_HOST", "")).strip()
        if name == "content-type":
            return str(environ.get("CONTENT_TYPE", "")).strip()
        if name == "content-length":
            return str(environ.get("CONTENT_LENGTH", "")).strip()
        return " ".join(str(environ.get("HTTP_" + name.upper().replace("-", "_"), "")).split())

    def _verify(self, credential: str, amz_date: str, canonical: str, given: str) -> tuple[str, str] | None:
        key_id, date, region, service, terminal = (credential.split("/") + [""] * 5)[:5]
        secret = self.secrets.get(key_id)
        if secret is None:
            return ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        scope = f"{date}/{region}/{service}/{terminal}"
        string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        if service != "s3" or not hmac.compare_digest(_signature(secret, date, region, string_to_sign), given):
            return ("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
        return None

    def _presigned(self, environ: dict[str, Any], query: list[tuple[str, str]], params: dict[str, str]) -> tuple[str, str] | None:
        try:
            signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError):
            return ("AuthorizationQueryParametersError", "X-Amz-Date and X-Amz-Expires are required.")
        canonical = self._canonical(environ, query, params.get("X-Amz-SignedHeaders", "").split(";"), "UNSIGNED-PAYLOAD")
        refusal = self._verify(params.get("X-Amz-Credential", ""), params["X-Amz-Date"], canonical, params["X-Amz-Signature"])
        if refusal is not None:
            return refusal
        if time.time() > signed_at.timestamp() + expires:
            return ("AccessDenied", "Request has expired")
        return None

    def _header(self, environ: dict[str, Any], query: list[tuple[str, str]], authorization: str) -> tuple[str, str] | None:
        fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 "):].split(","))
        payload = str(environ.get("HTTP_X_AMZ_CONTENT_SHA256", ""))
        canonical = self._canonical(environ, query, fields.get("SignedHeaders", "").split(";"), payload)
        return self._verify(fields.get("Credential", ""), str(environ.get("HTTP_X_AMZ_DATE", "")), canonical,
                            fields.get("Signature", ""))


@dataclass
class S3:
    """A running server: its endpoint URL, the bucket the tests use, and the SigV4 check in front of it."""

    endpoint: str
    bucket: str
    check: SigV4Check


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """moto's S3 on 127.0.0.1 (a free port) behind SigV4Check, with an empty bucket `BUCKET`."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server
    except ImportError as exc:
        reason = f"moto[server] is not installed ({exc}); scripts/setup.sh installs the test extras"
        if REQUIRED:
            pytest.fail(f"OMNIPOST_REQUIRE_S3 is set but {reason}", pytrace=False)
        pytest.skip(reason)
    check = SigV4Check(DomainDispatcherApplication(create_backend_app), {ACCESS_KEY_ID: SECRET_ACCESS_KEY})
    server = make_server("127.0.0.1", 0, check, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        import urllib.request

        # Unsigned: the check passes it to moto, which creates the bucket.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=10).read()
        yield S3(endpoint, BUCKET, check)
    finally:
        server.shutdown()
        thread.join(timeout=10)
