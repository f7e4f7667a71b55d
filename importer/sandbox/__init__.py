"""An iVvy-compatible API server for rehearsals, tests and benchmarks.

Written from the API reference (``shared/ivvy-api.md`` and the public ``ivvycode/apidocs`` pages),
not from the importer: it imports nothing of the pipeline (``_reference`` holds the facts it
enforces). Signature checks against what was received, stale requests, addOrUpdateTask with every
rule and code, look-up collections with pagination and filters, a real batch queue, and knobs for
every hard case the reference leaves open: text read back as HTML, lost answers of every kind,
late writes, lagging reads, other writers, three kinds of rate limit, gateway answers, ended
sessions, a skewed clock. ``/_sandbox/requests`` keeps every request body received.
"""

from ._app import (
    DEFAULT_KEY,
    DEFAULT_SECRET,
    KNOBS,
    Sandbox,
    SandboxApp,
    SandboxConfig,
    create_app,
)
from ._seed import SeedError, default_seed, load_seed
from ._server import SandboxServer, serve

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_SECRET",
    "KNOBS",
    "Sandbox",
    "SandboxApp",
    "SandboxConfig",
    "SandboxServer",
    "SeedError",
    "create_app",
    "default_seed",
    "load_seed",
    "serve",
]
