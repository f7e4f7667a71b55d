"""Where to send requests and with which key: small immutable values, never globals."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import UsageError

#: iVvy's regional API hosts.
REGIONS: dict[str, str] = {
    "au": "https://api.ap-southeast-2.ivvy.com",
    "us": "https://api.us-west-2.ivvy.com",
    "uk": "https://api.eu-west-2.ivvy.com",
}


def base_url_for(region: str) -> str:
    """The base URL of a region (``au``, ``us``, ``uk``); UsageError for any other name."""
    try:
        return REGIONS[region.strip().lower()]
    except KeyError:
        raise UsageError(
            f"unknown region {region!r}: use one of {', '.join(REGIONS)} or set IVVY_BASE_URL"
        ) from None


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key, its secret and the server to use. The secret never appears in ``repr``."""

    key: str
    secret: str = field(repr=False)
    base_url: str = REGIONS["au"]

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @property
    def target(self) -> str:
        """Where requests go and as whom, without the secret: ``base_url`` and the key."""
        return f"{self.base_url} (key {self.key})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Credentials from ``IVVY_API_KEY``, ``IVVY_API_SECRET`` and ``IVVY_BASE_URL`` or
        ``IVVY_REGION`` (default ``au``). UsageError when the key or the secret is missing."""
        env = os.environ if environ is None else environ
        key = env.get("IVVY_API_KEY", "").strip()
        secret = env.get("IVVY_API_SECRET", "").strip()
        missing = [n for n, v in (("IVVY_API_KEY", key), ("IVVY_API_SECRET", secret)) if not v]
        if missing:
            raise UsageError(
                f"{' and '.join(missing)} not set: export your iVvy API key and secret "
                "(iVvy: Settings > API), or use --sandbox to try the tool on a local sandbox"
            )
        base_url = env.get("IVVY_BASE_URL", "").strip()
        if not base_url:
            base_url = base_url_for(env.get("IVVY_REGION", "au") or "au")
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"IVVY_BASE_URL must start with http:// or https://, not {base_url!r}")
        return cls(key=key, secret=secret, base_url=base_url)
