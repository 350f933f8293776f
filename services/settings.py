"""Every setting of a Meridian process, in one typed model.

Built once at the entry point (`Settings.load`) and passed down; library code never reads the
environment itself. Sources, highest first: explicit overrides (CLI flags), `MERIDIAN_*`
environment variables, a TOML file (`--config` or `MERIDIAN_CONFIG`), the defaults below.
Unknown keys are refused everywhere, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "MERIDIAN_"
# Variables with the prefix that are not settings: the config path and the test harness's own.
_ENV_NOT_SETTINGS = ("MERIDIAN_CONFIG", "MERIDIAN_TEST_")


class SettingsError(ValueError):
    """Settings that cannot be used; the message says which and what to do."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid",
                                      validate_default=True)

    # where and who
    listen: list[str] = Field(
        default=["0.0.0.0", "::"],
        description="addresses to listen on, HTTP and UDP alike (IPv6 ones are IPv6-only)")
    port: int = Field(default=6969, ge=0, le=65535,
                      description="port for HTTP and UDP (0 picks a free one)")
    region: str = Field(default="local", pattern=r"^[a-z0-9-]{1,32}$",
                        description="this node's region name, as used in topics and metrics")
    node: str = Field(default_factory=lambda: socket.gethostname()[:64],
                      min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
                      description="this node's name (1-64 printable ASCII; default hostname)")
    worker: int = Field(default=0, ge=0,
                        description="index of this worker process (set by the supervisor)")
    store: str = Field(
        default="memory://",
        description="peer store URL: memory://, redis://[user:pass@]host:port/db, rediss://... "
                    "(TLS) or redis+cluster://host:port[,host:port...]")
    udp_enabled: bool = Field(default=True, description="answer BEP 15 UDP announces")
    workers: int = Field(
        default=0, ge=0, le=256,
        description="announce processes on the same ports; 0: one per core with a shared "
                    "store, 1 with memory://")
    log_level: str = Field(default="info", description="debug, info, warning or error")

    # announce policy
    announce_interval: int = Field(default=1800, ge=10,
                                   description="seconds clients are asked to wait between announces")
    min_announce_interval: int = Field(default=900, ge=1,
                                       description="seconds a client must wait (min interval)")
    peer_ttl: int | None = Field(default=None, ge=1,
                                 description="seconds a silent peer lives; default 2 x interval")
    default_numwant: int = Field(default=50, ge=0, description="peers returned when numwant is absent")
    max_numwant: int = Field(default=200, ge=1, description="cap on peers returned per announce")

    # bounds
    max_swarms: int = Field(default=1_000_000, ge=1, description="torrents the memory store holds")
    max_peers_per_swarm: int = Field(default=100_000, ge=1,
                                     description="peers per torrent and family a store holds")
    max_query_bytes: int = Field(default=4096, ge=256, description="longest accepted query string")
    max_scrape_hashes: int = Field(default=74, ge=1, le=1000,
                                   description="info hashes per HTTP scrape")
    full_scrape_enabled: bool = Field(default=False,
                                      description="answer /scrape without info_hash")
    full_scrape_limit: int = Field(default=1000, ge=1, description="torrents in a full scrape")
    max_inflight_announces: int = Field(
        default=2048, ge=1,
        description="announces in progress per process before load is shed with BEP 31 retry in")
    shed_retry_in_minutes: int = Field(default=5, ge=1,
                                       description="BEP 31 retry in when load is shed")
    gc_interval: int = Field(default=60, ge=1, description="seconds between sweeps of idle swarms")

    # UDP
    udp_secret: SecretStr | None = Field(
        default=None,
        description="shared key for UDP connection ids (16+ bytes; same on every node of every "
                    "region); unset: random per process")
    connection_id_lifetime: int = Field(default=120, ge=10,
                                        description="seconds per connection-id window (ids live 1-2 windows)")
    udp_max_packet: int = Field(default=2048, ge=98, description="largest UDP datagram accepted")

    # Redis store
    redis_timeout: float = Field(default=0.25, gt=0,
                                 description="seconds per Redis call before it counts as failed")
    redis_peer_ids: bool = Field(default=True,
                                 description="keep peer ids for non-compact answers (~20 B/peer)")
    redis_batch: bool = Field(default=True,
                              description="send one event-loop tick's announces as one pipeline")
    redis_max_connections: int = Field(default=64, ge=1,
                                       description="connections per Redis server per process")
    downloaded_ttl: int = Field(default=2_592_000, ge=1,
                                description="seconds a torrent's downloaded count outlives its "
                                            "last completed (Redis)")

    # degraded mode
    stale_cache_torrents: int = Field(default=100_000, ge=1,
                                      description="torrents in each process's stale cache")
    stale_cache_peers: int = Field(default=200, ge=1,
                                   description="cached peers per torrent and family")
    stale_cache_max_peers: int = Field(default=200_000, ge=2,
                                       description="cached peers in all, per process (~330 B each)")
    stale_cache_merge_every: float = Field(
        default=10.0, ge=0, description="seconds between merges of a store answer's peers")
    stale_interval_factor: float = Field(
        default=2.0, ge=1, description="interval multiplier in stale answers (kept below TTL)")
    backfill_max: int = Field(
        default=200_000, ge=1,
        description="announces answered from the cache kept to write once the store returns")
    breaker_failure_threshold: int = Field(
        default=5, ge=1, description="consecutive store failures before the breaker opens")
    breaker_open_seconds: float = Field(default=5.0, gt=0,
                                        description="seconds open before probing the store")
    breaker_probe_count: int = Field(default=1, ge=1, description="probes while half-open")
    emergency_interval_factor: float = Field(
        default=4.0, ge=1, description="interval multiplier in emergency (kept below TTL)")
    emergency_numwant: int = Field(default=25, ge=0, description="peers per answer in emergency")
    emergency_max_inflight: int = Field(
        default=256, ge=1, description="in-flight announces before shedding, in emergency")
    emergency_cache_max_age: float = Field(
        default=300.0, ge=0, description="a cached answer up to this old is used in emergency")
    emergency_poll_interval: float = Field(
        default=1.0, gt=0, description="seconds between polls of the emergency flag")

    # events and reconciliation
    kafka_bootstrap: str = Field(
        default="", description="Kafka bootstrap servers (host:port,...); empty: no events")
    topic_prefix: str = Field(
        default="meridian.announces",
        description="announce topics are <prefix>.<region>; dead letters go to <prefix>.dlq")
    topic_partitions: int = Field(default=6, ge=1,
                                  description="partitions of a region's topic when created")
    tombstone_ttl: int | None = Field(
        default=None, ge=1,
        description="seconds a merged `stopped` is remembered; default 2 x peer_ttl")
    spool_dir: str = Field(default="/var/tmp/meridian-spool",
                           description="where events wait while Kafka is away; each process "
                                       "uses <spool_dir>/<region>-<node>-w<worker>")
    spool_max_bytes: int = Field(default=256 << 20, ge=1 << 20,
                                 description="bound on spooled bytes; beyond it events are lost "
                                             "(counted in meridian_events_lost_total)")
    spool_fsync: Literal["always", "interval", "never"] = Field(
        default="interval", description="when the spool reaches the disk (see operations doc)")
    spool_fsync_interval_ms: int = Field(default=1000, ge=1,
                                         description="fsync period with spool_fsync=interval")
    event_queue_max: int = Field(default=10_000, ge=1,
                                 description="events held in memory per process before spooling")
    kafka_linger_ms: int = Field(default=5, ge=0, description="producer batching delay")
    kafka_batch_max: int = Field(default=1000, ge=1, description="events per producer flight")
    kafka_stall_ms: int = Field(default=2000, ge=100,
                                description="unconfirmed this long means Kafka is away: spool")
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1000,
                                          description="Kafka request timeout")
    emitter_close_timeout: float = Field(default=10.0, ge=0,
                                         description="seconds to flush events at shutdown")
    reconcile_batch: int = Field(default=5000, ge=1,
                                 description="events merged per store round (reconciler)")
    reconciler_metrics_port: int = Field(
        default=0, ge=0, le=65535,
        description="port of the reconciler's /metrics on 127.0.0.1 (0: none)")

    # behind a proxy
    trusted_proxies: list[str] = Field(
        default=[], description="CIDRs of reverse proxies whose client-IP header is believed")
    real_ip_header: str = Field(default="x-forwarded-for",
                                description="header holding the client IP behind a trusted proxy")

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("listen")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("listen needs at least one address")
        for address in value:
            ipaddress.ip_address(address)
        return value

    @property
    def shared_store(self) -> bool:
        """Whether every process sees the same swarms (not the per-process memory store)."""
        return not self.store.lower().startswith("memory:")

    @property
    def effective_workers(self) -> int:
        if self.workers == 0:
            return (os.cpu_count() or 1) if self.shared_store else 1
        if self.workers > 1 and not self.shared_store:
            raise SettingsError(
                f"--workers {self.workers} needs a shared store: memory:// lives inside one "
                "process, so workers would not see each other's peers. Use --store redis://...")
        return self.workers

    @property
    def effective_peer_ttl(self) -> int:
        return self.peer_ttl if self.peer_ttl is not None else 2 * self.announce_interval

    @property
    def spool_path(self) -> Path:
        return Path(self.spool_dir) / f"{self.region}-{self.node}-w{self.worker}"

    @property
    def effective_tombstone_ttl(self) -> int:
        return self.tombstone_ttl if self.tombstone_ttl is not None else 2 * self.effective_peer_ttl

    def topic(self, region: str | None = None) -> str:
        from services.stream.topics import region_topic

        return region_topic(region or self.region, self.topic_prefix)

    @property
    def dead_letter_topic(self) -> str:
        from services.stream.topics import dead_letter_topic

        return dead_letter_topic(self.topic_prefix)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from a TOML file, the environment and overrides, or `SettingsError`."""
        unknown = [k for k in os.environ if k.startswith(ENV_PREFIX)
                   and not k.startswith(_ENV_NOT_SETTINGS)
                   and k[len(ENV_PREFIX):].lower() not in cls.model_fields]
        if unknown:
            raise SettingsError(f"unknown environment variable(s) {', '.join(sorted(unknown))}; "
                                "`meridian config print` lists every setting")
        path = config or os.environ.get("MERIDIAN_CONFIG")
        values: dict[str, Any] = {}
        if path:
            try:
                values = tomllib.loads(Path(path).read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"cannot read config file {path}: {exc}") from exc
        for key in list(values):
            if f"{ENV_PREFIX}{key.upper()}" in os.environ:
                del values[key]  # the environment wins over the file
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc

    def describe(self) -> str:
        """Every setting as TOML, with its meaning and environment variable: `config print`."""
        lines = ["# Meridian settings: defaults shown; set in a TOML file (--config) or as",
                 "# MERIDIAN_<NAME> environment variables (lists as JSON).", ""]
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "<secret>" if value.get_secret_value() else ""
            lines.append(f"# {field.description}  [env {ENV_PREFIX}{name.upper()}]")
            lines.append(f"{name} = {_toml(value)}" if value is not None else f"# {name} =")
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
