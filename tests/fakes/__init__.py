"""Stateful fake upstreams (Starlette apps) that speak each platform's wire shapes; mounted on httpx2 clients by host."""
