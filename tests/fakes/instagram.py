"""Instagram with Facebook Login lives on graph.facebook.com: an Instagram professional account is the
`instagram_business_account` of a Facebook Page, so its fake is the graph.facebook.com fake (fakes/facebook.py),
one app for the host. This module names the Instagram side of it; IG publishing routes (/{ig-user-id}/media,
/media_publish, /content_publishing_limit, checked against the IGUser node spec) join FakeGraph's `routes()` later.
"""

from fakes.facebook import FakeGraph, IGAccount

FakeInstagram = FakeGraph  # the same host and state: Pages and the accounts linked to them

__all__ = ["FakeGraph", "FakeInstagram", "IGAccount"]
