"""The media host (media/host.py): presigned URLs from a real S3-compatible server on loopback (tests/s3server.py),
signed URLs served by omnipost's own HTTP transport, the caller's original URL, media.public_url_unavailable at
validate time, and an Instagram-emulating sandbox publish of a local file through the bucket, end to end."""

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from mediagen import make_image
from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.media.host import (
    RULE,
    MediaHosting,
    PublicUrlUnavailableError,
    S3MediaHost,
    SignatureExpiredError,
    SignatureInvalidError,
    SignedUrlHost,
    StoredMedium,
    signing_key,
)
from s3server import ACCESS_KEY_ID, REGION, S3, SECRET_ACCESS_KEY, s3  # noqa: F401
from test_publishing import connect, received
from toolresult import err, ok

pytestmark = pytest.mark.anyio


def _now() -> datetime:
    # S3 judges a presigned URL by its own (real) clock, so the injected clock starts at the real time; from there
    # on every instant is the injected one's, and expiry is decided by moving it, never by sleeping.
    return datetime.now(timezone.utc).replace(microsecond=0)


def _medium(tmp_path: Path, data: bytes, media_id: str = "med_test", source_url: str | None = None) -> StoredMedium:
    path = tmp_path / hashlib.sha256(data).hexdigest()
    path.write_bytes(data)
    return StoredMedium(media_id, hashlib.sha256(data).hexdigest(), "image/jpeg", len(data), path, source_url)


def _host(http: httpx2.AsyncClient, server: S3, clock: FixedClock, **kw: Any) -> S3MediaHost:
    return S3MediaHost(http, clock, bucket=server.bucket, region=REGION, access_key_id=ACCESS_KEY_ID,
                       secret_access_key=SECRET_ACCESS_KEY, endpoint_url=server.endpoint, **kw)


def _s3_code(response: httpx2.Response) -> str:
    text = response.text
    return text[text.find("<Code>") + 6:text.find("</Code>")]


# --- the S3 host against the server --------------------------------------------------------------------------


async def test_the_bucket_takes_the_file_once_and_a_presigned_url_serves_the_same_bytes(s3: S3, tmp_path: Path) -> None:
    data = make_image("JPEG", 640, 480) + b"\x00" * 1024  # a real JPEG with trailing bytes: the digest is exact
    medium = _medium(tmp_path, data)
    async with httpx2.AsyncClient() as http:
        host = _host(http, s3, FixedClock(_now()), prefix=f"t1/{tmp_path.name}/")
        assert not await host.exists(medium)
        with anyio.fail_after(30):
            url = await host.url_for(medium)  # copies it (a signed PUT the server verified), then presigns
        assert await host.exists(medium)
        assert url.startswith(f"{s3.endpoint}/{s3.bucket}/t1/") and "X-Amz-Signature=" in url
        fetched = await http.get(url)
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == medium.sha256
    assert fetched.headers["content-type"] == "image/jpeg"
    assert SECRET_ACCESS_KEY not in url and "omnipost-test-secret" not in repr(host)


async def test_a_presigned_url_is_refused_once_expired_and_when_tampered(s3: S3, tmp_path: Path) -> None:
    medium = _medium(tmp_path, make_image("JPEG", 320, 320))
    clock = FixedClock(_now())
    async with httpx2.AsyncClient() as http:
        host = _host(http, s3, clock, prefix=f"t2/{tmp_path.name}/", expires=900)
        await host.store(medium)
        fresh = host.presign(medium.sha256)
        clock.at = clock.at - timedelta(seconds=901)  # signed 901 s ago with 900 s to live: lapsed now
        lapsed = host.presign(medium.sha256)
        assert (await http.get(fresh)).status_code == 200
        expired = await http.get(lapsed)
        assert expired.status_code == 403 and _s3_code(expired) == "AccessDenied"
        other_key = fresh.replace(medium.sha256, "0" * 64)  # the signature was for another object
        tampered = await http.get(other_key)
        assert tampered.status_code == 403 and _s3_code(tampered) == "SignatureDoesNotMatch"


async def test_a_wrong_secret_is_refused_and_reported_without_the_secret(s3: S3, tmp_path: Path) -> None:
    medium = _medium(tmp_path, make_image("JPEG", 200, 200))
    async with httpx2.AsyncClient() as http:
        host = S3MediaHost(http, FixedClock(_now()), bucket=s3.bucket, region=REGION, access_key_id=ACCESS_KEY_ID,
                           secret_access_key="not-the-secret-0000", endpoint_url=s3.endpoint, prefix=f"t3/{tmp_path.name}/")
        with pytest.raises(PublicUrlUnavailableError) as caught:
            await host.url_for(medium)
    obj = caught.value.to_error_object()
    assert (obj.code, obj.rule, obj.retryable) == ("preflight_failed", RULE, False)  # fix the settings; no retry
    assert s3.check.refused[-1] == "SignatureDoesNotMatch"  # refused by the server for the signature
    assert "not-the-secret" not in json.dumps(obj.model_dump()) and "not-the-secret" not in str(caught.value)


async def test_an_unreachable_bucket_is_a_retryable_failure(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with httpx2.AsyncClient() as http:
        host = S3MediaHost(http, FixedClock(_now()), bucket="b", region=REGION, access_key_id=ACCESS_KEY_ID,
                           secret_access_key=SECRET_ACCESS_KEY, endpoint_url=f"http://127.0.0.1:{port}")
        with pytest.raises(Exception) as caught:
            await host.url_for(_medium(tmp_path, b"bytes"))
    assert getattr(caught.value, "code", None) == "platform_unavailable" and getattr(caught.value, "retryable", False)


# --- omnipost's own signed URLs ---------------------------------------------------------------------------------


def test_own_signed_urls_verify_and_refuse_tampering_and_expiry() -> None:
    clock = FixedClock(datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc))
    host = SignedUrlHost("https://omnipost.example.com/", signing_key(b"k" * 44), clock, expires=900)
    url = httpx2.URL(host.sign("med_abc"))
    assert str(url).startswith("https://omnipost.example.com/media/med_abc?")
    expires, signature = url.params["expires"], url.params["signature"]
    host.verify("med_abc", expires, signature)  # good
    for media_id, exp, sig in (("med_abd", expires, signature), ("med_abc", str(int(expires) + 60), signature),
                               ("med_abc", expires, signature[:-1] + ("0" if signature[-1] != "0" else "1")),
                               ("med_abc", None, signature), ("med_abc", expires, None), ("med_abc", "soon", signature)):
        with pytest.raises(SignatureInvalidError):
            host.verify(media_id, exp, sig)
    other = SignedUrlHost("https://omnipost.example.com", signing_key(b"j" * 44), clock, expires=900)
    with pytest.raises(SignatureInvalidError):
        other.verify("med_abc", expires, signature)
    clock.at += timedelta(seconds=901)
    with pytest.raises(SignatureExpiredError):
        host.verify("med_abc", expires, signature)
    assert "k" * 10 not in repr(host)


async def test_the_http_transport_serves_a_signed_url_and_refuses_bad_and_expired_ones(tmp_path: Path,
                                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    from omnipost.transports import build_http_app, build_http_server

    clock = FixedClock(datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc))
    settings = Settings(data_dir=tmp_path / "data", log_level="WARNING", media_roots=[tmp_path], api_key="op_live_" + "x" * 32,  # type: ignore[call-arg]
                        public_base_url="https://omnipost.example.com", _env_file=None)
    server, _keys = build_http_server(settings, "127.0.0.1", 8765, clock=clock)
    picture = tmp_path / "photo.jpg"
    picture.write_bytes(make_image("JPEG", 400, 400))
    async with Client(server) as client:
        media_id = ok(await client.call_tool("upload_media", {"path": str(picture)}))["id"]
        url = server.runtime.hosting.host.sign(media_id)
        app = build_http_app(server, settings, "streamable-http", 8765)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://127.0.0.1:8765") as http:
            path = httpx2.URL(url).raw_path.decode()
            good = await http.get(path)  # no API key: the signature is the authorisation
            assert good.status_code == 200 and good.content == picture.read_bytes()
            assert good.headers["content-type"] == "image/jpeg"
            tampered = await http.get(path.replace("signature=", "signature=0"))
            assert tampered.status_code == 403 and tampered.json()["error"]["rule"] == "media.url_signature_invalid"
            unsigned = await http.get(f"/media/{media_id}")
            assert unsigned.status_code == 403 and unsigned.json()["error"]["rule"] == "media.url_signature_invalid"
            assert (await http.post("/mcp", json={})).status_code == 401  # everything else still needs the key
            clock.at += timedelta(seconds=settings.media_url_expires + 1)
            expired = await http.get(path)
            assert expired.status_code == 403 and expired.json()["error"]["rule"] == "media.url_expired"
            clock.at -= timedelta(seconds=settings.media_url_expires + 1)
            ok(await client.call_tool("delete_media", {"mediaId": media_id}))
            gone = await http.get(path)
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
            key = server.runtime.hosting.host._key  # noqa: SLF001 - the secret the test looks for
            answers = tampered.text + unsigned.text + expired.text + gone.text
            assert key.hex() not in answers and key.hex() not in caplog.text and repr(key) not in caplog.text


# --- the caller's original URL, and the order of choice ---------------------------------------------------------


async def test_the_original_url_is_used_only_when_no_host_is_configured(tmp_path: Path) -> None:
    from_url = _medium(tmp_path, b"jpeg bytes", source_url="https://cdn.example.com/a.jpg")
    local = _medium(tmp_path, b"other bytes", media_id="med_local")
    none = MediaHosting(None)
    assert await none.url_for(from_url) == "https://cdn.example.com/a.jpg"
    assert none.can_serve(from_url.source_url) and not none.can_serve(None) and not none.configured
    with pytest.raises(PublicUrlUnavailableError) as caught:
        await none.url_for(local)
    obj = caught.value.to_error_object()
    assert (obj.code, obj.rule) == ("preflight_failed", RULE) and "OMNIPOST_MEDIA_S3_BUCKET" in (obj.remediation or "")
    signed = MediaHosting(SignedUrlHost("https://omnipost.example.com", b"k" * 32, FixedClock(_now()), expires=900))
    assert (await signed.url_for(from_url)).startswith("https://omnipost.example.com/media/")  # the bytes we checked


# --- preflight and publishing through the server ----------------------------------------------------------------


def _s3_settings(tmp_path: Path, s3: S3) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data", log_level="DEBUG", media_roots=[tmp_path], _env_file=None,
        media_s3_bucket=s3.bucket, media_s3_endpoint_url=s3.endpoint, media_s3_region=REGION,
        media_s3_access_key_id=ACCESS_KEY_ID, media_s3_secret_access_key=SECRET_ACCESS_KEY,
        media_s3_prefix=f"e2e/{tmp_path.name}/")


async def _validate_rules(client: Client, media_id: str, platform: str) -> list[str]:
    result = ok(await client.call_tool("validate_post", {"text": "Photo", "media": [{"mediaId": media_id}],
                                                         "targets": [{"platform": platform}]}))
    return [e["rule"] for t in result["results"] for e in t["errors"]]


async def test_preflight_reports_a_missing_media_host_for_url_platforms_only(tmp_path: Path, s3: S3) -> None:
    picture = tmp_path / "square.jpg"
    picture.write_bytes(make_image("JPEG", 1080, 1080))
    bare = Settings(data_dir=tmp_path / "bare", log_level="WARNING", media_roots=[tmp_path], _env_file=None)  # type: ignore[call-arg]
    for settings, expected in ((bare, True), (_s3_settings(tmp_path, s3), False)):
        async with Client(build_server(settings, clock=FixedClock(_now()))) as client:
            media_id = ok(await client.call_tool("upload_media", {"path": str(picture)}))["id"]
            for platform in ("instagram", "threads"):
                assert (RULE in await _validate_rules(client, media_id, platform)) is expected, (platform, expected)
            assert RULE not in await _validate_rules(client, media_id, "bluesky")
            if expected:  # publishing is refused the same way, before anything is sent
                gram = await connect(client, "instagram", "gram", sandboxMode="container")
                refused = await client.call_tool("publish_post", {"text": "Photo", "media": [{"mediaId": media_id}],
                                                                  "targets": [{"accountId": gram}]})
                error = err(refused)
                assert error["code"] == "preflight_failed" and RULE in json.dumps(error)
                assert received(settings) == []


async def test_an_instagram_publish_of_a_local_file_goes_through_the_bucket(tmp_path: Path, s3: S3,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _s3_settings(tmp_path, s3)
    picture = tmp_path / "square.jpg"
    picture.write_bytes(make_image("JPEG", 1080, 1080))
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()
    results: list[Any] = []
    refused_before = len(s3.check.refused)
    async with Client(build_server(settings, clock=FixedClock(_now()))) as client:
        gram = await connect(client, "instagram", "gram", sandboxMode="container")
        spool = await connect(client, "threads", "spool", sandboxMode="container")
        uploaded = ok(await client.call_tool("upload_media", {"path": str(picture)}))
        results.append(uploaded)
        with anyio.fail_after(60):
            batch = ok(await client.call_tool("publish_post", {
                "text": "Through the bucket", "media": [{"mediaId": uploaded["id"]}],
                "targets": [{"accountId": gram}, {"accountId": spool}]}))
        results.append(batch)
        assert [r["status"] for r in batch["results"]] == ["published", "published"], batch
    posts = {p["id"]: p for p in received(settings)}
    for result in batch["results"]:
        media = posts[result["upstreamId"]]["media"]
        # The sandbox fetched the presigned URL it was handed and found the file's own bytes there.
        assert media[0]["sha256"] == digest and media[0]["size"] == picture.stat().st_size
        assert media[0]["url"] == f"{s3.endpoint}/{s3.bucket}/e2e/{tmp_path.name}/{digest}"
    assert s3.check.refused[refused_before:] == []  # every request (PUT, HEAD, the sandbox's GET) was signed right
    # No secret anywhere: logs, tool results, the data directory.
    haystacks = [caplog.text, json.dumps(results)]
    haystacks += [p.read_bytes().decode("latin-1") for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert not any(SECRET_ACCESS_KEY in h for h in haystacks)


async def test_a_container_sandbox_refuses_a_url_serving_other_bytes(tmp_path: Path, s3: S3) -> None:
    from omnipost.sandbox.upstream import create_sandbox_app

    clock = FixedClock(_now())
    medium = _medium(tmp_path, make_image("JPEG", 300, 300))
    async with httpx2.AsyncClient() as http:
        host = _host(http, s3, clock, prefix=f"t4/{tmp_path.name}/")
        url = await host.url_for(medium)
        app = create_sandbox_app(tmp_path / "sandbox.db", clock=clock, fetch=lambda: http)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="https://sandbox.test") as sandbox:
            token = (await sandbox.post("/v1/accounts", json={"handle": "gram", "emulates": "instagram", "mode": "container"})).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}

            async def create(item: dict[str, Any]) -> httpx2.Response:
                return await sandbox.post("/v1/containers", json={"text": "pic", "media": [item]}, headers=auth)

            assert (await create({"url": url, "sha256": medium.sha256})).status_code == 201
            mismatch = await create({"url": url, "sha256": "0" * 64})
            assert mismatch.status_code == 400 and mismatch.json()["error"] == "media_mismatch"
            missing = await create({"sha256": medium.sha256})
            assert missing.status_code == 400 and missing.json()["error"] == "media_url_required"
            clock.at -= timedelta(seconds=901)
            lapsed = await create({"url": host.presign(medium.sha256), "sha256": medium.sha256})
            assert lapsed.status_code == 400 and lapsed.json()["error"]["error_subcode"] == 2207052


async def test_an_upload_is_copied_to_the_bucket_and_deleted_with_its_last_record(tmp_path: Path, s3: S3) -> None:
    settings = _s3_settings(tmp_path, s3)
    picture = tmp_path / "copy.jpg"
    picture.write_bytes(make_image("JPEG", 500, 500))
    medium = _medium(tmp_path, picture.read_bytes())
    async with httpx2.AsyncClient() as http:
        probe = _host(http, s3, FixedClock(_now()), prefix=settings.media_s3_prefix)
        async with Client(build_server(settings, clock=FixedClock(_now()))) as client:
            media_id = ok(await client.call_tool("upload_media", {"path": str(picture)}))["id"]
            assert await probe.exists(medium)  # copied at upload: a worker on another machine finds it
            ok(await client.call_tool("delete_media", {"mediaId": media_id}))
            assert not await probe.exists(medium)


class _CdnStore:
    """The media store with a fake CDN: ingest_url serves bytes from a dict (no network), the rest is the real store."""

    def __new__(cls, data_dir: Path, roots: list[Path], served: dict[str, bytes]) -> Any:
        from omnipost.media.storage import MediaStore

        class Store(MediaStore):
            async def ingest_url(self, url: str, **_kw: Any) -> Any:
                import base64

                return await self.ingest_base64(base64.b64encode(served[url]).decode())

        return Store(data_dir, roots)


async def test_media_fetched_from_a_url_remembers_it_and_preflight_lets_it_through(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from omnipost.accounts import Accounts, ProfileDirectory
    from omnipost.media.service import MediaService
    from omnipost.store.crypto import Vault
    from omnipost.store.db import Database

    clock = FixedClock(_now())
    url = "https://cdn.example.com/photo.jpg"
    photo, local = make_image("JPEG", 600, 600), make_image("JPEG", 610, 600)
    (tmp_path / "local.jpg").write_bytes(local)
    db = await Database.open(None, tmp_path / "db", clock.now())
    try:
        profile = (await db.ensure_default_profile(clock.now())).id
        hosting = MediaHosting(None)
        service = MediaService(db, _CdnStore(tmp_path / "data", [tmp_path], {url: photo}), None, None, clock,  # type: ignore[arg-type]
                               hosting=hosting)
        from_url = await service.upload(profile, url=url)
        from_disk = await service.upload(profile, path=str(tmp_path / "local.jpg"))
        assert from_url.source_url == url and from_disk.source_url is None
        assert await hosting.url_for(service.stored(from_url)) == url
        with pytest.raises(PublicUrlUnavailableError):
            await hosting.url_for(service.stored(from_disk))
        directory = ProfileDirectory(Accounts(db, Vault(Fernet.generate_key()), clock), db, profile, hosting=hosting)
        for record, expected in ((from_url, True), (from_disk, False)):
            assert await directory.get_media(record.id, profile) is not None
            assert await directory.public_url_available(record.id, profile) is expected
        # The same bytes uploaded from disk first and from a URL later: the record learns its public URL.
        later = "https://cdn.example.com/local.jpg"
        service.store = _CdnStore(tmp_path / "data", [tmp_path], {later: local})
        again = await service.upload(profile, url=later)
        assert again.id == from_disk.id and again.source_url == later
    finally:
        await db.close()


def test_unset_bundle_settings_mean_no_media_host() -> None:
    # An MCPB client passes an optional user_config entry left blank as "" or as its literal placeholder.
    settings = Settings(_env_file=None, media_s3_bucket="", media_s3_region="${user_config.media_s3_region}",  # type: ignore[call-arg]
                        media_s3_secret_access_key="${user_config.media_s3_secret_access_key}", public_base_url="  ")
    assert (settings.media_s3_bucket, settings.media_s3_secret_access_key, settings.public_base_url) == (None, None, None)
    assert settings.media_s3_region == "us-east-1"
