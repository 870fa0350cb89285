"""One Delivery per claimed message: registered when the consumer hands a message out,
read by the actor and middleware, gone when the message is acked, nacked, requeued or
dropped with dramatiq's delay queue — and nothing of ours on dramatiq's MessageProxy.

Real consumers on the test database (no worker process): the consumer is driven by hand,
as dramatiq's consumer thread drives it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from dramatiq.broker import MessageProxy
from dramatiq.message import Message

from rhesis_pipeline.worker.delivery import Deliveries, Delivery, deliveries
from rhesis_pipeline.worker.registry import Registration

from .support import actors
from .support.runs import scalar
from .support.waiting import wait_until

PACKAGE = Path(__file__).resolve().parent.parent / "rhesis_pipeline"

#: What dramatiq's MessageProxy.__init__ sets; anything else on a proxy would be ours.
PROXY_ATTRIBUTES = {"failed", "_message", "_exception"}


def _state(message_id: str) -> str:
    return scalar("SELECT state::text FROM dramatiq.queue WHERE message_id = :m", m=message_id)


def _token(message_id: str) -> str | None:
    return scalar("SELECT token::text FROM rhesis.claims WHERE message_id = :m", m=message_id)


@pytest.fixture
def registered(database_url):
    """A registered worker (claims are recorded with a token) for the smoke queue."""
    registration = Registration([actors.SMOKE_QUEUE])
    registration.start()
    try:
        yield registration
    finally:
        registration.stop()


def test_a_delivery_lives_from_hand_out_to_ack_nack_or_requeue(registered):
    broker = actors.record.broker
    before = len(deliveries)
    # Given: three messages, handed out one by one by a real consumer.
    sent = [actors.record.send(f"delivery-{i}") for i in range(3)]
    consumer = broker.consume(actors.SMOKE_QUEUE, prefetch=3, timeout=200)
    try:
        handed = [
            wait_until(lambda: next(consumer), timeout=10, what=f"message {i} handed out")
            for i in range(3)
        ]
        assert sorted(m.message_id for m in handed) == sorted(m.message_id for m in sent)

        # Then: each has its delivery, with the token of its claim, and the proxy carries
        # nothing of ours.
        assert len(deliveries) == before + 3
        for proxy in handed:
            delivery = deliveries.of(proxy)
            assert isinstance(delivery, Delivery)
            assert delivery.message is proxy
            assert delivery.queue_name == actors.SMOKE_QUEUE
            assert delivery.claim_token == _token(proxy.message_id) is not None
            assert delivery.claim == (proxy.message_id, delivery.claim_token)
            assert delivery.preloaded is None  # not a member
            assert set(vars(proxy)) == PROXY_ATTRIBUTES

        # When: one is acked, one nacked (failed), one requeued.
        acked, nacked, requeued = handed
        consumer.ack(acked)
        nacked.fail()
        consumer.nack(nacked)
        consumer.requeue([requeued])

        # Then: no delivery is left; the consumer's next round writes the ack and the
        # nack, and claims the requeued message again (a new proxy, a new delivery).
        assert len(deliveries) == before
        assert all(deliveries.of(proxy) is None for proxy in handed)
        again = wait_until(lambda: next(consumer), timeout=10, what="the requeued message")
        assert (_state(acked.message_id), _state(nacked.message_id)) == ("done", "rejected")
        assert again.message_id == requeued.message_id
        assert again is not requeued and deliveries.of(again) is not None
        consumer.requeue([again])
        assert len(deliveries) == before
    finally:
        consumer.close()


def test_a_released_delivery_goes_back_to_its_queue_uncounted_and_is_gone(registered):
    broker = actors.record.broker
    before = len(deliveries)
    message = actors.record.send("released")
    consumer = broker.consume(actors.SMOKE_QUEUE, prefetch=1, timeout=200)
    try:
        proxy = wait_until(lambda: next(consumer), timeout=10, what="the message handed out")
        first_token = _token(proxy.message_id)
        # When: its processing failed because the database was unreachable (RhesisRetries
        # marks the delivery so), and dramatiq acks it.
        delivery = deliveries.of(proxy)
        assert delivery is not None
        delivery.release = True
        consumer.ack(proxy)

        # Then: the delivery is gone, and the message is claimed again, under a new claim,
        # instead of being marked done.
        assert len(deliveries) == before
        again = wait_until(lambda: next(consumer), timeout=10, what="the message back")
        assert again.message_id == message.message_id
        assert _token(again.message_id) not in (None, first_token)
        consumer.requeue([again])
    finally:
        consumer.close()


def test_delayed_deliveries_that_dramatiq_drops_are_dropped_on_close(registered):
    broker = actors.record.broker
    before = len(deliveries)
    actors.record.send_with_options(args=("delayed",), delay=3_000)
    consumer = broker.consume(f"{actors.SMOKE_QUEUE}.DQ", prefetch=2, timeout=200)
    proxy = wait_until(lambda: next(consumer), timeout=10, what="the delayed message")
    assert deliveries.of(proxy) is not None
    # When: dramatiq drops its delay queue (an error in its consumer thread) and closes the
    # consumer without acking or requeueing the message.
    consumer.close()
    # Then: its delivery went with it.
    assert deliveries.of(proxy) is None
    assert len(deliveries) == before
    again = broker.consume(f"{actors.SMOKE_QUEUE}.DQ", prefetch=2, timeout=200)
    try:
        back = wait_until(lambda: next(again), timeout=10, what="the delayed message again")
        again.requeue([back])
    finally:
        again.close()


def test_each_proxy_finds_its_own_delivery_even_for_the_same_message():
    """A message whose outcome was refused goes back to its queue and may be handed out
    again in this process while the first proxy still waits for its ack."""
    registry = Deliveries()
    message = Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    first, second = MessageProxy(message), MessageProxy(message)
    registry.add(Delivery(message=first, queue_name="q", claim_token="t1"))
    registry.add(Delivery(message=second, queue_name="q", claim_token="t2"))

    popped = registry.pop(first)
    assert popped is not None and popped.claim_token == "t1"
    still = registry.of(second)
    assert still is not None and still.claim_token == "t2"
    assert registry.pop(first) is None
    assert registry.drop("q", [message.message_id]) == 1
    assert len(registry) == 0


def test_nothing_in_the_package_sets_or_reads_attributes_of_its_own_on_a_message():
    """The hand-off is the Delivery: no setattr/getattr on a message or proxy."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "getattr", "hasattr", "delattr")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in ("message", "proxy", "msg")
            ):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == []
    assert "_rhesis_" not in "".join(p.read_text() for p in PACKAGE.rglob("*.py"))
