"""The baseline: a bare MCPServer with one echo tool, served on stdio."""

from mcp.server import MCPServer

mcp = MCPServer("bare")


@mcp.tool()
async def echo(text: str) -> str:
    """Echo the text back."""
    return text


if __name__ == "__main__":
    mcp.run()
