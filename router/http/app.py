"""The edge's whole HTTP API in one application: what `switchboard run` serves.

Health and metrics, every configured connector's routes (through the router's Edge),
the customers and conversations APIs, the live dashboard, and the OpenAPI document. Building it does no
I/O: Redis and Kafka are reached only when a request comes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from aiohttp import web
from redis.asyncio import Redis

from processors.policy.model import Policy
from processors.stores.tags import Tags
from router.edge import Publisher, RouterEdge
from router.http import conversations, customers, dashboard, openapi
from router.http.customers import PublishLink
from router.http.integrations import Integrations
from router.http.server import Check, build_app, connector_routes
from router.settings import Settings

__all__ = ["edge_app"]


def edge_app(settings: Settings, checks: dict[str, Check], *, publish: Publisher,
             publish_link: PublishLink, redis: Callable[[], Redis],
             policy: Callable[[], Policy]) -> web.Application:
    """The application of an edge process, every route mounted."""
    access = Integrations.from_settings(settings)

    def queues() -> Collection[str]:
        return policy().queues.keys()  # read per call: a policy reload adds or removes queues

    edge = RouterEdge(settings, publish, redis, policy, access)
    app = build_app(settings, checks, connector_routes(settings, edge))
    app.cleanup_ctx.append(edge.releasing)
    customers.add_routes(app, redis, publish_link, policy().tiers, access.caller_of,
                         namespace=f"{settings.topic_prefix}sb", history_cap=settings.history_cap,
                         tags=Tags(settings.kafka_partitions))
    conversations.add_routes(app, settings, redis, publish, access, queues=queues)
    dashboard.add_routes(app, dashboard.Dashboard(settings, redis, policy, access))
    openapi.add_route(app)
    return app
