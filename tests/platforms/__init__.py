"""Platform adapter tests (a package: tests/preflight/test_mastodon.py and tests/platforms/test_mastodon.py share a basename)."""
