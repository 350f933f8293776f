"""Topic naming, and creating topics idempotently.

Every region writes its announce events to one topic, `<prefix>.<region>` (by default
`meridian.announces.eu-west`), keyed by info_hash so that one torrent's events stay in one
partition and in order. Events the reconciler cannot decode go to the dead-letter topic
`<prefix>.dlq`, and region-wide commands (emergency mode, `services.ops.emergency`) to the
compacted control topic `<prefix>.control`; the region names `dlq` and `control` are therefore
reserved, so neither topic is ever taken for a region's events.

The partition count is fixed when a topic is created and should not change afterwards: adding
partitions moves keys to other partitions, and a torrent's events written before and after the
change are then no longer ordered against each other. Pick it for the busiest region's peak
(partitions are cheap; a reconciler consumes at most one partition per consumer).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "meridian.announces"
DEAD_LETTER_SUFFIX = "dlq"
CONTROL_SUFFIX = "control"
# Topic suffixes that are not regions: consumers of "every region's topic" must skip them.
RESERVED_SUFFIXES = (DEAD_LETTER_SUFFIX, CONTROL_SUFFIX)
# Kafka's own rule for topic names (legal characters, at most 249 of them).
_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
# The settings' rule for region names.
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")


class TopicError(RuntimeError):
    """A topic could not be created or named; the message says which and why."""


def region_topic(region: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The topic a region's announce events go to: `<prefix>.<region>`."""
    if not _REGION.match(region):
        raise TopicError(f"region {region!r} is not a valid region name ([a-z0-9-], 1-32)")
    if region in RESERVED_SUFFIXES:
        raise TopicError(f"region name {region!r} is reserved (topics <prefix>.dlq and "
                         "<prefix>.control are not a region's); choose another region name")
    return _checked(f"{prefix}.{region}")


def dead_letter_topic(prefix: str = DEFAULT_PREFIX) -> str:
    """Where events that do not decode go, with the reason in a header: `<prefix>.dlq`."""
    return _checked(f"{prefix}.{DEAD_LETTER_SUFFIX}")


def control_topic(prefix: str = DEFAULT_PREFIX) -> str:
    """Region-wide commands, keyed by region, compacted: `<prefix>.control`."""
    return _checked(f"{prefix}.{CONTROL_SUFFIX}")


def region_of_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The region whose events a topic holds, or None for any other topic (dead letters and
    control too)."""
    head = prefix + "."
    if not topic.startswith(head):
        return None
    region = topic[len(head):]
    if region in RESERVED_SUFFIXES or not _REGION.match(region):
        return None
    return region


def _checked(name: str) -> str:
    if not _TOPIC_NAME.match(name):
        raise TopicError(f"{name!r} is not a legal Kafka topic name (letters, digits, '._-', "
                         "at most 249); check the topic prefix setting")
    return name


async def ensure_topics(bootstrap_servers: str, topics: Sequence[str], *, partitions: int,
                        replication_factor: int = 1,
                        configs: Mapping[str, str] | None = None,
                        timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created.

    Idempotent: a topic that already exists is left as it is (its partition count is not
    checked or changed). Waits until every topic is visible in the cluster's metadata, so a
    producer started afterwards finds it. Raises `TopicError` when the cluster refuses a topic
    (bad partition count, replication factor above the broker count, ...) or does not answer
    within `timeout` seconds.
    """
    for topic in topics:
        _checked(topic)
    if partitions < 1 or replication_factor < 1:
        raise TopicError("partitions and replication_factor must be at least 1")
    deadline = time.monotonic() + timeout
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                request_timeout_ms=int(min(timeout, 30.0) * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await asyncio.wait_for(admin.list_topics(), _left(deadline)))
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        created: list[str] = []
        if wanted:
            response = await asyncio.wait_for(admin.create_topics(
                [NewTopic(name=t, num_partitions=partitions,
                          replication_factor=replication_factor,
                          topic_configs=dict(configs or {})) for t in wanted],
                timeout_ms=int(_left(deadline) * 1000)), _left(deadline))
            for entry in response.topic_errors:
                topic, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else None
                if code == 0:
                    created.append(topic)
                elif for_code(code) is TopicAlreadyExistsError:
                    pass  # created meanwhile by another node: fine
                else:
                    raise TopicError(f"cannot create topic {topic}: "
                                     f"{for_code(code).__name__} {message or ''}".rstrip())
        while not set(topics) <= set(await asyncio.wait_for(admin.list_topics(),
                                                             _left(deadline))):
            await asyncio.sleep(0.1)
            _left(deadline)
        if created:
            log.info("created topics %s (%d partitions, replication %d)", ", ".join(created),
                     partitions, replication_factor)
        return created
    except (TimeoutError, KafkaError) as exc:
        raise TopicError(f"Kafka at {bootstrap_servers} did not create or list topics "
                         f"{', '.join(topics)} within {timeout:.0f}s ({exc!r}); is it "
                         "reachable?") from exc
    finally:
        try:
            await asyncio.wait_for(admin.close(), 5)
        except Exception:  # closing a half-started client: nothing left to do
            log.debug("admin client close failed", exc_info=True)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left
