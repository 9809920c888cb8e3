"""The sandbox platform: a local simulated social network (upstream.py) that omnipost publishes to
through an ordinary adapter (platforms/sandbox.py), so the product can be tried end to end with no
account and no network. The upstream keeps what it received in its own SQLite file."""
