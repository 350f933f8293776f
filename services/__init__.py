"""Meridian: a multi-region, active-active BitTorrent tracker.

`core` is the pure protocol (bytes in, values out); `stores` keep swarms; `announce` serves
HTTP and UDP; `reconciler` merges other regions' events. See docs/architecture.md.
"""

__version__ = "0.1.0"
