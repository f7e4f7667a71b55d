"""``task-import serve``: the whole job on a local web page, over the same pipeline."""

from ._app import Page, ServeConfig, loopback_hosts, mapping_toml

__all__ = ["Page", "ServeConfig", "loopback_hosts", "mapping_toml"]
