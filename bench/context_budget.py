"""The context budget of tools/list (issue 11): what every connected model reads before its first call.

Builds the server in-process (a throwaway data directory), lists its tools through the MCP client, and prints:
the whole tools/list answer and the "core" (every tool's name + description + inputSchema) in bytes, each with an
estimated token count, and each tool's own sizes, largest first. Exits 1 when either is over its budget
(omnipost.toolschema.CORE_BUDGET / LIST_BUDGET); tests/test_context_budget.py asserts the same.

Bytes are JSON as json.dumps writes it by default (with ", " and ": "), as the issue measured them; the compact wire
form is printed too. Tokens are estimated as bytes / 4 (a rough rule for English and JSON; no tokenizer is used).

    PYTHONPATH=server python bench/context_budget.py
"""

import os
import sys
import tempfile

import anyio


async def listing() -> dict:
    from mcp.client import Client

    from omnipost.app import build_server
    from omnipost.config import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        server = build_server(Settings(data_dir=data_dir, log_level="WARNING", _env_file=None))  # type: ignore[call-arg]
        async with Client(server) as client:
            tools = await client.list_tools()
    return tools.model_dump(mode="json", by_alias=True, exclude_none=True)


def main() -> int:
    os.environ.setdefault("OMNIPOST_LOG_LEVEL", "WARNING")
    from omnipost.toolschema import CORE_BUDGET, LIST_BUDGET, context_sizes

    sizes = context_sizes(anyio.run(listing))
    print(f"{'tool':<26}{'core':>8}{'input':>8}{'output':>8}{'descr':>8}")
    for name, s in sorted(sizes["tools"].items(), key=lambda item: -(item[1]["core"] + item[1]["output"])):
        print(f"{name:<26}{s['core']:>8}{s['input']:>8}{s['output']:>8}{s['description']:>8}")
    print()
    over = False
    for label, size, budget in (("core (names + descriptions + input schemas)", sizes["core"], CORE_BUDGET),
                                ("tools/list (whole answer)", sizes["list"], LIST_BUDGET)):
        verdict = "ok" if size <= budget else "OVER BUDGET"
        over |= size > budget
        print(f"{label}: {size} bytes, ~{size // 4} tokens (bytes/4); budget {budget} bytes: {verdict}")
    print(f"tools/list as compact wire JSON: {sizes['wire']} bytes, ~{sizes['wire'] // 4} tokens; {len(sizes['tools'])} tools")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
