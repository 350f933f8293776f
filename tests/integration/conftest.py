"""Integration fixtures: a real Kafka broker for the session (tests/kafka_servers.py says where
it comes from). A missing Java or missing jars fail the tests, with what to run; they never skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.kafka_servers import KafkaBroker, KafkaUnavailable, controllable_kafka, kafka_broker


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """One broker for the whole session: MERIDIAN_TEST_KAFKA, a container, or the local jars."""
    with contextlib.ExitStack() as stack:
        try:
            broker = stack.enter_context(kafka_broker())
        except KafkaUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield broker


@pytest.fixture(scope="session")
def kafka_controllable(kafka: KafkaBroker) -> Iterator[KafkaBroker]:
    """A broker the test may stop and start again (the session's one unless it is external).

    A test that stops it must start it again before it ends, also when it fails.
    """
    with contextlib.ExitStack() as stack:
        try:
            broker = stack.enter_context(controllable_kafka(kafka))
        except KafkaUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        yield broker
