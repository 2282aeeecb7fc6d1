"""The v1 routers, one module per area; ``ROUTERS`` is what the app mounts."""

from ingestd.api.routes.documents import router as documents_router
from ingestd.api.routes.events import router as events_router
from ingestd.api.routes.jobs import router as jobs_router
from ingestd.api.routes.search import router as search_router

ROUTERS = [documents_router, jobs_router, events_router, search_router]
