"""omnipost: publish and schedule one post to many social accounts, from any MCP client."""

__version__ = "0.1.0"
