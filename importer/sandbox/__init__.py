"""An iVvy-compatible API server for rehearsals, tests and benchmarks.

Written from ``shared/ivvy-api.md``: signature checks against what was received, stale requests,
addOrUpdateTask with every rule and code, look-up collections with pagination and filters, the
batch namespace, and knobs for rate limits, latency, failures and dropped answers.
"""

from ._app import DEFAULT_KEY, DEFAULT_SECRET, Sandbox, SandboxApp, SandboxConfig, create_app
from ._seed import default_seed, load_seed
from ._server import SandboxServer, serve

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_SECRET",
    "Sandbox",
    "SandboxApp",
    "SandboxConfig",
    "SandboxServer",
    "create_app",
    "default_seed",
    "load_seed",
    "serve",
]
