"""The platform registry is complete and the only source: every platform has every part (spec fields, rules,
preflight cases, a fake and a contract run when it publishes), and every list derived from it agrees with it."""

import dataclasses
import importlib.util
import inspect
import typing
from pathlib import Path
from typing import Any, get_args

import pytest
from mcp import Client
from pydantic import BaseModel, SecretStr

from omnipost import caps, versions
from omnipost.domain import DISPLAY_NAME, OPTION_KEY, PLATFORM_ALIASES, RULE_PREFIX, Platform
from omnipost.oauth.providers import PROVIDERS
from omnipost.platforms import PREVIEWS
from omnipost.platforms.registry import CONNECTABLE, PLATFORMS, ConnectKind, PlatformSpec, Strategy
from omnipost.preflight.rules import RULES
from omnipost.request import PlatformOverrides, Target

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
RULES_DIR = ROOT / "server" / "omnipost" / "preflight" / "rules"
CONTRACT = TESTS / "platforms" / "test_contract.py"

# ARCHITECTURE §2: how each platform reaches exactly-once.
STRATEGY = {"sandbox": "caller_id", "bluesky": "caller_id", "x": "search", "linkedin": "search", "facebook": "search",
            "pinterest": "search", "instagram": "container", "threads": "container", "mastodon": "idempotency_key"}


def _secret_fields(model: type[BaseModel]) -> list[str]:
    return [n for n, f in model.model_fields.items() if SecretStr in (f.annotation, *get_args(f.annotation))]


def _contract_run(platform: str, contract: Path = CONTRACT) -> str | None:
    """What runs the platform's adapter against its fake, or None. Once the contract suite exists it must
    parametrize over the registry or name the platform; until then, the platform's own adapter tests."""
    if contract.exists():
        text = contract.read_text(encoding="utf-8")
        return str(contract) if "PLATFORMS" in text or f'"{platform}"' in text else None
    own = [TESTS / "platforms" / f"test_{platform}.py", TESTS / f"test_{platform}.py"]
    return next((str(p) for p in own if p.exists()), None)


def _fake(platform: str) -> str | None:
    """The platform's upstream fake: tests/fakes/<p>.py; the sandbox's is its embedded app."""
    if platform == "sandbox":
        from omnipost.sandbox.upstream import create_sandbox_app

        return create_sandbox_app.__name__
    fake = TESTS / "fakes" / f"{platform}.py"
    return str(fake) if fake.exists() else None


def missing_parts(spec: PlatformSpec, contract: Path = CONTRACT) -> list[str]:
    """The parts a platform lacks (empty: complete)."""
    p, out = spec.platform, []
    if spec.connect not in get_args(ConnectKind):
        out.append("connect")
    if spec.exactly_once not in get_args(Strategy) or spec.exactly_once != STRATEGY.get(p):
        out.append("exactly_once")
    if spec.api_version is None or spec.api_version.platform != p:
        out.append("api_version")
    if spec.real:
        if not (isinstance(spec.options, type) and issubclass(spec.options, BaseModel)):
            out.append("options")
        if not callable(spec.preview):
            out.append("preview")
        if spec.daily_cap != spec.rules.daily_post_cap:  # type: ignore[union-attr]
            out.append("daily_cap")
        if not (RULES_DIR / f"{p}.py").exists() or RULES.get(Platform(p)) is not spec.rules:
            out.append("rules")
        if not (TESTS / "preflight" / "cases" / f"{p}.yaml").exists():
            out.append("preflight cases")
    if spec.adapter is None:  # validation and previews only: no connect flow, nothing to build
        if spec.credentials is not None or spec.connect != "none":
            out.append("adapter")
        return out
    # An OAuth 2.0 platform connects through oauth/connect.py (its provider in oauth/providers.py), not connect_with.
    if spec.connect == "none" or not (callable(spec.connect_with) or (spec.connect == "oauth2" and p in PROVIDERS)):
        out.append("connect")
    if not all(callable(getattr(spec.adapter, m, None)) for m in ("from_deps", "publish", "delete")):
        out.append("adapter")
    if spec.credentials is None or not _secret_fields(spec.credentials):
        out.append("credentials")
    if importlib.util.find_spec("omnipost.platforms.errormap") is not None:
        from omnipost.platforms.errormap import ErrorMap

        if not isinstance(spec.errors, ErrorMap):
            out.append("errors")
    if _fake(p) is None:
        out.append("fake")
    if _contract_run(p, contract) is None:
        out.append("contract run")
    return out


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_every_platform_has_every_part(platform: str) -> None:
    assert missing_parts(PLATFORMS[platform]) == []


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    bluesky = PLATFORMS["bluesky"]
    assert missing_parts(dataclasses.replace(bluesky, credentials=None)) == ["credentials"]
    assert missing_parts(dataclasses.replace(bluesky, connect_with=None)) == ["connect"]
    assert missing_parts(dataclasses.replace(bluesky, adapter=type("NoFromDeps", (), {"publish": 1, "delete": 1}))) == ["adapter"]
    assert missing_parts(dataclasses.replace(PLATFORMS["x"], exactly_once="caller_id", api_version=None)) == [
        "exactly_once", "api_version"]
    assert missing_parts(dataclasses.replace(PLATFORMS["linkedin"], connect="oauth2")) == ["adapter"]
    assert missing_parts(dataclasses.replace(PLATFORMS["x"], connect="token")) == ["connect"]  # OAuth only as oauth2
    contract = tmp_path / "test_contract.py"
    contract.write_text('@pytest.mark.parametrize("platform", ["sandbox"])\n', encoding="utf-8")
    assert missing_parts(bluesky, contract) == ["contract run"]
    assert missing_parts(PLATFORMS["sandbox"], contract) == []


def test_the_registry_is_the_platform_enum_plus_the_sandbox() -> None:
    real = [p for p, s in PLATFORMS.items() if s.real]
    assert sorted(real) == sorted(Platform) and set(PLATFORMS) - set(real) == {"sandbox"}
    assert all(PLATFORMS[p].platform == p for p in PLATFORMS)
    for p in map(Platform, real):
        assert p in RULE_PREFIX and p in OPTION_KEY and p in DISPLAY_NAME and PLATFORM_ALIASES[p.value] is p
        assert RULES[p].platform is p and all(r.id.startswith(RULE_PREFIX[p] + ".") or r.id.startswith("meta.")
                                              for r in RULES[p].rules)


def test_derived_lists_agree_with_the_registry() -> None:
    real = {Platform(p): s for p, s in PLATFORMS.items() if s.real}
    assert set(RULES) == set(real)
    assert PREVIEWS == {p: s.preview for p, s in real.items()}
    assert [v.platform for v in versions.VERSIONS] == list(PLATFORMS)
    assert all(caps.daily_cap(p) == s.daily_cap for p, s in PLATFORMS.items())
    assert caps.daily_cap("instagram") == 50 and caps.daily_cap("sandbox") is None
    assert CONNECTABLE == tuple(sorted((p for p, s in PLATFORMS.items() if s.adapter), key=lambda p: p != "sandbox"))


def test_the_request_takes_each_platforms_option_model() -> None:
    for p, spec in PLATFORMS.items():
        if spec.options is None:
            continue
        assert spec.options in get_args(Target.model_fields[OPTION_KEY[Platform(p)]].annotation)
        for alias in (a for a, q in PLATFORM_ALIASES.items() if q.value == p):
            override = next(t for t in get_args(PlatformOverrides.model_fields[alias].annotation) if t is not type(None))
            assert issubclass(override, spec.options)
    assert PlatformOverrides(twitter={"replySettings": "verified"}).for_platform(Platform.X).replySettings == "verified"  # type: ignore[union-attr]


async def test_connect_account_takes_the_platforms_with_an_adapter(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert tools["connect_account"].input_schema["properties"]["platform"]["enum"] == list(CONNECTABLE)


async def test_the_runtime_builds_one_adapter_per_adapter_bearing_spec(server: Any, client: Client) -> None:
    await client.call_tool("list_accounts", {})  # opens the runtime
    adapters = server.runtime.adapters
    assert {p: type(a) for p, a in adapters.items()} == {p: s.adapter for p, s in PLATFORMS.items() if s.adapter}
    bluesky = adapters["bluesky"]
    assert bluesky.clock is server.runtime.clock and bluesky.sessions is server.runtime.sessions and bluesky.resolver is not None


def test_every_spec_field_is_typed() -> None:
    hints = typing.get_type_hints(PlatformSpec)
    assert {f.name for f in dataclasses.fields(PlatformSpec)} <= set(hints)
    assert inspect.isclass(PlatformSpec) and PlatformSpec.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_the_manifest_names_every_platform_of_the_registry(tmp_path: Path, settings: Any) -> None:
    import json

    from omnipost.manifest import manifest_drift

    manifest = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    manifest["keywords"].remove("pinterest")
    manifest["description"] = manifest["description"].replace("Threads, ", "")
    broken = tmp_path / "manifest.json"
    broken.write_text(json.dumps(manifest), encoding="utf-8")
    drift = manifest_drift(broken, settings)
    assert "platform missing from manifest keywords: pinterest" in drift
    assert "platform missing from manifest description: Threads" in drift
    assert not [d for d in manifest_drift(ROOT / "manifest.json", settings) if d.startswith("platform")]
