"""The one composition root: build_server() constructs everything the server uses."""

import functools
import inspect
import json
import logging
import secrets
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import httpx2
from mcp.server import MCPServer
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, StrictJsonSchema, _inline_root_ref
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, InputRequiredResult, TextContent
from pydantic import BaseModel, TypeAdapter, ValidationError, WithJsonSchema

from omnipost import __version__
from omnipost.clock import Clock, SystemClock
from omnipost.config import Settings
from omnipost.auth import current_caller
from omnipost.errors import AppError, ErrorObject, RateLimitedError, echo
from omnipost.preflight.engine import AccountLookup, MediaLookup
from omnipost.surrogates import refuse_lone_surrogates
from omnipost.toolschema import request_schema, slim_input, slim_output, with_error_branch

logger = logging.getLogger("omnipost")

INSTRUCTIONS = (
    "omnipost validates, publishes and schedules one post to up to 25 social accounts "
    "(Bluesky, X, Threads, LinkedIn, Instagram, Facebook Pages, Pinterest, Mastodon). Call validate_post "
    "first: it reports every rule a target breaks, with the numbers and a remediation to apply. "
    "Errors carry a code, the rule id and a remediation; explain_preflight_rule explains any rule. "
    "Every tool's profileId is a profile's id or name; without it, the default profile."
)


def new_request_id() -> str:
    """A short id the user can quote; it is also in the server's log line for the failure."""
    return "req_" + secrets.token_hex(8)


def json_path(loc: Sequence[int | str]) -> str:
    """('targets', 3, 'media', 0, 'url') -> 'targets[3].media[0].url'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + echo(part)  # a key the caller made up may be any length
    return out or "$"


def error_result(error: ErrorObject) -> CallToolResult:
    """A tool error that carries the whole §3 object as structured content."""
    data = error.model_dump(exclude_none=True)
    head = f"[{error.code}] {error.message}" + (f" — {error.remediation}" if error.remediation else "")
    return CallToolResult(
        content=[TextContent(type="text", text=head + "\n" + json.dumps(data, ensure_ascii=False))],
        structured_content={"error": data},
        is_error=True,
    )


def validation_error(exc: ValidationError, request_id: str, *, tool: str | None = None,
                     taken_by: Callable[[str], list[str]] | None = None) -> ErrorObject:
    """Every schema problem, each with the JSON path of its field; the first one heads the error. `taken_by(field)`:
    the other tools that take a top-level argument `tool` does not (publish_post's idempotencyKey sent to validate_post)."""
    details: list[ErrorObject] = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        # Pydantic names a union branch or a function-validator in the location; the model wants the field.
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        path = json_path(loc)
        msg = err["msg"].removeprefix("Value error, ")
        remediation = f"Fix {path}: {msg}."
        others = taken_by(str(loc[0])) if taken_by and err["type"] == "extra_forbidden" and len(loc) == 1 else []
        if others:
            msg = f"{tool} does not take {path}; {', '.join(others)} {'does' if len(others) == 1 else 'do'}"
            remediation = f"Remove {path}, or call {others[0]} instead."
        details.append(
            ErrorObject(code="validation_failed", message=f"{path}: {msg}", rule=path, path=path,
                        remediation=remediation, requestId=request_id)
        )
    first = details[0]
    return ErrorObject(
        code="validation_failed",
        message=first.message if len(details) == 1 else f"{len(details)} fields are invalid; first: {first.message}",
        rule=first.rule,
        path=first.path,
        remediation=first.remediation,
        requestId=request_id,
        details=details,
    )


def pre_parse_json(model: type[BaseModel], arguments: Any) -> Any:
    """Arguments with object/array fields sent as JSON text decoded, as the SDK does for ordinary tools.

    Some clients (Claude Desktop among them) send nested arguments as JSON strings; a field that
    admits text keeps its string as given.
    """
    if not isinstance(arguments, dict):
        return arguments
    out = dict(arguments)
    for key, value in arguments.items():
        field = model.model_fields.get(key)
        if field is None or not isinstance(value, str) or _admits_str(field.annotation):
            continue
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            continue
        if isinstance(decoded, dict | list):
            out[key] = decoded
    return out


def _admits_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    return any(_admits_str(arg) for arg in typing.get_args(annotation))


@functools.cache
def _output_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """A tool output schema for `model` (as the SDK derives it, slimmed), with the error branch; once per model."""
    schema = TypeAdapter(model).json_schema(schema_generator=StrictJsonSchema)
    return with_error_branch(slim_output(_inline_root_ref(schema)))


class ModelOutput(FuncMetadata):
    """Output handling for a tool that returns a pydantic model: the model's JSON as structured content,
    and the same JSON, compact, as the text block for clients that read only text.

    The SDK's own rendering indents the text copy (half again the bytes, and the tokens a model reads)
    and validates the instance against its own class again; neither adds anything here.
    """

    def convert_result(self, result: Any) -> CallToolResult | InputRequiredResult:
        if self.output_model is not None and type(result) is self.output_model:
            data = result.model_dump(mode="json", by_alias=True)
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)
        return super().convert_result(result)


class OmnipostServer(MCPServer):
    """MCPServer whose tool failures are always the structured §3 error object."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # tool name -> the single pydantic parameter whose fields are advertised at top level
        self._flattened: dict[str, tuple[str, type[BaseModel]]] = {}
        self.runtime: Any = None
        self.rate_limiter: Any = None  # keys.RateLimiter, per process; applies to API-key callers only
        self.verifier: Any = None  # keys.OmnipostTokenVerifier on the HTTP transports (transports.build_http_server)
        self._register_prompts: Callable[["OmnipostServer"], None] | None = None

    def add_tool(self, fn: Any, **kwargs: Any) -> None:  # type: ignore[override]  # same signature, keyword-only use
        """Register a tool whose advertised output schema also admits the error envelope.

        A tool returning a pydantic model gets that model's output schema from a per-model cache
        (the SDK would generate it again for every tool returning the same model, and schema
        generation is most of start-up), and its result is rendered by ModelOutput.
        """
        returns = inspect.signature(fn, eval_str=True).return_annotation
        model_output = isinstance(returns, type) and issubclass(returns, BaseModel) and "structured_output" not in kwargs
        super().add_tool(fn, **({**kwargs, "structured_output": False} if model_output else kwargs))
        tool = self._tool_manager.get_tool(kwargs.get("name") or fn.__name__)
        assert tool is not None
        if model_output:
            tool.fn_metadata = ModelOutput(arg_model=tool.fn_metadata.arg_model, output_model=returns,
                                           output_schema=_output_schema_of(returns))
        elif tool.fn_metadata.output_schema is not None:
            tool.fn_metadata.output_schema = with_error_branch(slim_output(tool.fn_metadata.output_schema))
        tool.parameters = slim_input(tool.parameters)

    def add_request_tool(self, fn: Any, *, param: str, model: type[BaseModel], schema: dict[str, Any] | None = None,
                         **kwargs: Any) -> None:
        """Register a tool whose one model parameter is advertised flattened (its fields are the arguments).

        call_tool validates the arguments as `model` itself and hands the tool (and its resolvers) the
        instance, so the SDK's argument model only carries it through (an opaque field: generating the
        model's JSON schema inside it again would be wasted start-up). The advertised schema is the
        model's own, slimmed (toolschema.request_schema), generated once per model, or `schema` when given
        (a compact one that names what the model validates in full).
        """
        fn.__annotations__[param] = Annotated[Any, WithJsonSchema({"type": "object"})]
        self.add_tool(fn, **kwargs)
        tool = self._tool_manager.get_tool(kwargs["name"])
        assert tool is not None
        tool.parameters = schema if schema is not None else request_schema(model)
        self._flattened[tool.name] = (param, model)

    def add_prompts_later(self, register: Callable[["OmnipostServer"], None]) -> None:
        """Run `register` (which adds prompts) on the first prompts/list or prompts/get, not at start-up:
        the prompt files' YAML parser is not needed to answer initialize and tools/list."""
        self._register_prompts = register

    def _ensure_prompts(self) -> None:
        register, self._register_prompts = self._register_prompts, None
        if register is not None:
            register(self)

    async def list_prompts(self) -> Any:
        self._ensure_prompts()
        return await super().list_prompts()

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        """prompts/get; an unknown prompt or a missing required argument is invalid params (-32602), as the
        protocol says, answered without a server-side traceback."""
        self._ensure_prompts()
        prompt = self._prompt_manager.get_prompt(name)
        if prompt is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {echo(name)}. prompts/list names every prompt.",
                           data={"name": echo(name)})
        missing = [a.name for a in prompt.arguments or () if a.required and a.name not in (arguments or {})]
        if missing:
            raise MCPError(code=INVALID_PARAMS, message=f"Prompt {name} needs the arguments: {', '.join(missing)}.",
                           data={"name": name, "missing": missing})
        return await super().get_prompt(name, arguments, context)

    async def list_tools(self) -> Any:
        tools = await super().list_tools()
        if self.runtime is not None:
            self.runtime.start()  # the client has what it needs to start; load the store now
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> CallToolResult | InputRequiredResult:
        request_id = new_request_id()
        try:
            self.runtime.services.admit(current_caller())  # the per-key rate limit, as every REST request takes it
        except RateLimitedError as exc:
            return error_result(exc.to_error_object(request_id))
        if (refused := refuse_lone_surrogates(arguments, request_id)) is not None:
            return error_result(refused)
        flattened = self._flattened.get(name)
        if flattened is not None:
            param, model = flattened
            try:
                arguments = {param: model.model_validate(pre_parse_json(model, arguments))}
            except ValidationError as exc:
                return error_result(validation_error(exc, request_id, tool=name, taken_by=lambda field: sorted(
                    other for other, (_, m) in self._flattened.items() if other != name and field in m.model_fields)))
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            return error_result(self._classify(exc, name, request_id))

    def _classify(self, exc: ToolError, name: str, request_id: str) -> ErrorObject:
        cause = exc.__cause__
        if isinstance(exc, UnexpectedToolError):
            while cause is not None and not isinstance(cause, AppError) and cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, AppError):
                return cause.to_error_object(request_id)
            logger.error("internal error %s in tool %s", request_id, name, exc_info=exc.__cause__)
            return ErrorObject(code="internal_error", message=f"Internal error (ref {request_id}).",
                               remediation="This is a bug in omnipost; retrying will not help. Report the ref.", requestId=request_id)
        if isinstance(cause, ValidationError):
            return validation_error(cause, request_id)
        if self._tool_manager.get_tool(name) is None:
            return ErrorObject(code="not_found", message=f"There is no tool named '{echo(name)}'.", rule="name",
                               remediation="Call tools/list for the tools this server has.", requestId=request_id)
        return ErrorObject(code="validation_failed", message=str(exc), requestId=request_id)


def build_server(
    settings: Settings,
    *,
    clock: Clock | None = None,
    http: httpx2.AsyncClient | None = None,
    accounts: AccountLookup | None = None,
    media: MediaLookup | None = None,
    resolver: Any = None,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> OmnipostServer:
    """Build the omnipost MCP server: tools, resources and prompts, wired to one Runtime.

    `http` replaces the HTTP client (tests mount fake upstreams on it); `accounts`/`media` replace
    validate_post's lookups; `resolver` replaces DNS for the SSRF guard (tests). `token_verifier` and
    `auth` turn on the SDK's bearer authentication for the HTTP transports (see transports.py).
    """
    from omnipost import clientlog, completions, prompts, resources, tools
    from omnipost.ratelimit import RateLimiter
    from omnipost.runtime import Runtime
    from omnipost.services import Services

    rt = Runtime(settings=settings, clock=clock or SystemClock(), http=http,
                 extra={k: v for k, v in {"accounts": accounts, "media": media, "resolver": resolver}.items() if v is not None})
    server = OmnipostServer("omnipost", title="omnipost", version=__version__, instructions=INSTRUCTIONS,
                            website_url="https://github.com/omnipost/omnipost", log_level=settings.log_level.upper(),
                            lifespan=rt.lifespan, token_verifier=token_verifier, auth=auth)
    server.runtime = rt
    server.rate_limiter = RateLimiter(settings.rate_limit_per_minute, rt.clock)
    rt.services = Services(rt, server.rate_limiter)
    tools.register_tools(server, rt)
    resources.register_resources(server, rt)
    server.add_prompts_later(prompts.register_prompts)
    completions.register(server, rt)
    clientlog.register(server)
    return server
