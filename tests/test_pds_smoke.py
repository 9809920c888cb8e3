"""The local PDS (tools/pds/launcher.py, via the tests/pds.py fixture) behaves like Bluesky's.

Also pins facts the Bluesky adapter relies on, observed on @atproto/pds 0.5.35:
- createRecord with an rkey that already exists answers HTTP 500
  {"error": "InternalServerError", "message": "Internal Server Error"} (the log
  says "There is already a value at key: <collection>/<rkey>"): no specific
  error name, so a retry must check with getRecord whether its post landed.
- 301 graphemes of post text: HTTP 400 InvalidRequest, "grapheme too big".
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any

import pytest
from mediagen import make_image
import pds
from pds import LocalPds

POST = "app.bsky.feed.post"
_B32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"

local_pds = pds.local_pds  # the session-wide PDS fixture


def make_tid(micros: int | None = None, clock_id: int | None = None) -> str:
    """An atproto TID: 13 base32-sortable chars of (0 | 53-bit µs timestamp | 10-bit clock id)."""
    if micros is None:
        micros = time.time_ns() // 1000
    if clock_id is None:
        clock_id = random.randrange(1024)
    value = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    return "".join(_B32_SORTABLE[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def test_make_tid_shape() -> None:
    tid = make_tid(1_700_000_000_000_000, 5)
    assert len(tid) == 13 and tid[0] in "234567abcdefghij"
    assert make_tid(1, 0) < make_tid(2, 0)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@pytest.fixture(scope="module")
def bot(local_pds: LocalPds) -> dict[str, Any]:
    """An account plus a session opened with an app password, as the adapter logs in."""
    account = local_pds.create_account()
    app_password = local_pds.create_app_password(account)
    session = local_pds.create_session(account["handle"], app_password)
    return {**account, "app_password": app_password, "app_jwt": session["accessJwt"]}


def test_health(local_pds: LocalPds) -> None:
    r = local_pds.client.get("/xrpc/_health")
    assert r.status_code == 200
    assert r.json() == {"version": "0.5.35"}
    desc = local_pds.call("GET", "com.atproto.server.describeServer")
    assert desc["availableUserDomains"] == [".test"]
    assert desc["inviteCodeRequired"] is False
    assert local_pds.url.startswith("http://127.0.0.1:")


def test_create_account_and_app_password_session(local_pds: LocalPds) -> None:
    account = local_pds.create_account()
    assert account["did"].startswith("did:plc:")
    assert account["handle"].endswith(".test")
    app_password = local_pds.create_app_password(account)
    assert len(app_password) == 19 and app_password.count("-") == 3  # xxxx-xxxx-xxxx-xxxx
    session = local_pds.create_session(account["handle"], app_password)
    assert session["did"] == account["did"]
    claims = json.loads(base64.urlsafe_b64decode(session["accessJwt"].split(".")[1] + "=="))
    assert claims["scope"] == "com.atproto.appPass"
    # the DID works as identifier too
    assert local_pds.create_session(account["did"], app_password)["handle"] == account["handle"]


def test_upload_blob_png(local_pds: LocalPds, bot: dict[str, Any]) -> None:
    png = make_image("png", 2, 2)
    blob = local_pds.call(
        "POST", "com.atproto.repo.uploadBlob", bot["app_jwt"], content=png, headers={"content-type": "image/png"}
    )["blob"]
    assert blob["$type"] == "blob"
    assert blob["mimeType"] == "image/png"
    assert blob["size"] == len(png)
    assert blob["ref"]["$link"].startswith("bafkrei")


def test_post_with_rkey_duplicate_get_delete(local_pds: LocalPds, bot: dict[str, Any]) -> None:
    did, token = bot["did"], bot["app_jwt"]
    rkey = make_tid()
    record = {"$type": POST, "text": "hello from the local PDS", "langs": ["en"], "createdAt": now_iso()}

    created = local_pds.call(
        "POST",
        "com.atproto.repo.createRecord",
        token,
        json={"repo": did, "collection": POST, "rkey": rkey, "record": record},
    )
    assert created["uri"] == f"at://{did}/{POST}/{rkey}"
    assert created["validationStatus"] == "valid"

    # The same rkey again, same record: the PDS has no dedicated error for it.
    dup = local_pds.xrpc(
        "POST",
        "com.atproto.repo.createRecord",
        token,
        json={"repo": did, "collection": POST, "rkey": rkey, "record": record},
    )
    assert dup.status_code == 500, dup.text
    assert dup.json() == {"error": "InternalServerError", "message": "Internal Server Error"}
    # ...and with different content: the same answer; the first record is untouched.
    dup2 = local_pds.xrpc(
        "POST",
        "com.atproto.repo.createRecord",
        token,
        json={"repo": did, "collection": POST, "rkey": rkey, "record": {**record, "text": "other"}},
    )
    assert (dup2.status_code, dup2.json()) == (500, dup.json())
    # the cause is only in the server log
    deadline = time.monotonic() + 5
    while f"There is already a value at key: {POST}/{rkey}" not in local_pds.log_tail(400):
        assert time.monotonic() < deadline, local_pds.log_tail()
        time.sleep(0.05)

    got = local_pds.get_record(did, POST, rkey)
    assert got is not None
    assert got["uri"] == created["uri"] and got["cid"] == created["cid"]
    assert got["value"] == record
    assert [r["uri"] for r in local_pds.list_records(did, POST)] == [created["uri"]]

    local_pds.call(
        "POST", "com.atproto.repo.deleteRecord", token, json={"repo": did, "collection": POST, "rkey": rkey}
    )
    assert local_pds.get_record(did, POST, rkey) is None
    assert local_pds.list_records(did, POST) == []


def test_text_over_300_graphemes_rejected(local_pds: LocalPds, bot: dict[str, Any]) -> None:
    def post(text: str):
        return local_pds.xrpc(
            "POST",
            "com.atproto.repo.createRecord",
            bot["app_jwt"],
            json={"repo": bot["did"], "collection": POST, "record": {"$type": POST, "text": text, "createdAt": now_iso()}},
        )

    # 301 graphemes, each "e" + combining acute (2 code points): graphemes, not code points, count
    r = post("e\u0301" * 301)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "InvalidRequest"
    assert body["message"] == (
        "Invalid app.bsky.feed.post record: grapheme too big (maximum 300, got 301) at $.record.text"
    )
    ok = post("e\u0301" * 300)  # 600 code points, 900 bytes, 300 graphemes: accepted
    assert ok.status_code == 200, ok.text
    rkey = ok.json()["uri"].rsplit("/", 1)[1]
    local_pds.call(
        "POST", "com.atproto.repo.deleteRecord", bot["app_jwt"],
        json={"repo": bot["did"], "collection": POST, "rkey": rkey},
    )
