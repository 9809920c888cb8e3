"""The committed OpenAPI document (openapi.json) is the one the code builds, and says what the issue promises."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omnipost.rest.openapi import ROOT_FILE, document, document_bytes
from omnipost.rest.routes import OPS

REPO = Path(__file__).resolve().parents[1]


def test_the_committed_document_is_current() -> None:
    assert ROOT_FILE == REPO / "openapi.json"
    assert ROOT_FILE.read_bytes() == document_bytes(), "openapi.json drifted: run python -m omnipost.rest.openapi"


def test_the_check_command_agrees() -> None:
    proc = subprocess.run([sys.executable, "-m", "omnipost.rest.openapi", "--check"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO / "server"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_every_operation_has_an_id_and_the_error_object_on_every_error_status() -> None:
    doc = document()
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert len(ops) == len(OPS) and len({op["operationId"] for op in ops}) == len(ops)
    for op in ops:
        errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
        assert {"500"} <= set(errors) and all(r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
                                              for r in errors.values()), op["operationId"]
        assert "requestBody" not in op or op["requestBody"]["content"]["application/json"]["schema"]["$ref"].startswith("#/components/")
    refs = set(json.dumps(doc).split('"$ref": "#/components/schemas/')[1:])
    assert all(ref.split('"', 1)[0] in doc["components"]["schemas"] for ref in refs)
    create = doc["paths"]["/v1/posts"]["post"]
    assert create["requestBody"]["content"]["application/json"]["example"]["targets"]
    assert create["responses"]["201"]["links"]["GetPost"]["operationId"] == "getPost"


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")  # comes with schemathesis (the dev extras)
    validator.validate(document())


def test_every_example_is_accepted_by_its_model() -> None:
    from omnipost.rest.routes import UPDATE_MODEL, UpdateBody

    for op in OPS:
        if op.example is not None and op.body is not None:
            model = UPDATE_MODEL if op.body is UpdateBody else op.body
            model.model_validate(op.example | ({"id": "post_x"} if op.body is UpdateBody else {}))
        if op.answer_example is not None:
            op.answer.model_validate(op.answer_example)
