"""The publisher's resends for want of a confirmation back off (no broker: paho queues what
it cannot send, PUBACKs and acknowledgements are handed in as paho would, on a fake clock)."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

import gateway.acquisition.publisher as publisher_module
from daq.config import Delivery, load_config
from daq.payload import Ack, ack_topic, encode_ack
from gateway.acquisition.publisher import ACK_BACKOFF_MAX, Publisher
from gateway.outbox import Outbox

TIMEOUT_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(publisher_module, "time", fake)
    return fake


@pytest.fixture
def publisher(tmp_path: Path, clock: Clock) -> Publisher:
    (tmp_path / "site.yaml").write_text(
        "enterprise: {id: e}\ngateways: [{id: gw-1, buses: []}]\n"
        "mqtt: {host: 127.0.0.1, port: 9}\n")
    box = Outbox(tmp_path / "outbox.sqlite")
    box.put_many([("daq/e/gw-1/data", b"x")] * 3)
    pub = Publisher(load_config(tmp_path / "site.yaml"), box, "t", enterprise="e",
                    gateway="gw-1", delivery=Delivery(ack_timeout_s=TIMEOUT_S))
    pub._connected.set()  # as after a connect: publish (paho queues while unconnected)
    return pub


def run(pub: Publisher, clock: Clock, until_s: float) -> list[float]:
    """Advance in 1 s steps, the broker acknowledging whatever is sent; when each resend
    happened (seconds on the clock)."""
    resends: list[float] = []
    while clock.now < until_s:
        before = pub.resent
        pub._settle()
        if pub.resent > before:
            resends.append(clock.now)
        pub._send()
        for mid in list(pub._inflight):
            pub._on_publish(None, None, mid, 0, None)  # type: ignore[arg-type]
        clock.now += 1.0
    return resends


def test_resends_for_want_of_a_confirmation_back_off_and_a_confirmation_resets_them(
        publisher: Publisher, clock: Clock) -> None:
    resends = run(publisher, clock, 1000 + 900)
    gaps = [b - a for a, b in itertools.pairwise(resends)]
    cap = TIMEOUT_S * ACK_BACKOFF_MAX
    # 10 s, then 20, 40, 80 s, then the cap: not one window every 10 s (a step or two
    # more each: a PUBACK is taken in at the next step, and a wait is passed when exceeded)
    assert resends[0] - 1000 <= TIMEOUT_S + 2
    assert [g - g % 10 for g in gaps[:3]] == [20, 40, 80]
    assert all(cap < g <= cap + 2 for g in gaps[3:])
    assert len(resends) < 900 / TIMEOUT_S / 4
    # storage answers (confirming one row): the next wait is the configured one again
    ack = Ack("e", "gw-1", publisher.outbox.epoch, ((1, 1),))
    publisher._on_message(None, None, SimpleNamespace(  # type: ignore[arg-type]
        topic=ack_topic("e", "gw-1"), payload=encode_ack(ack)))
    publisher._settle()
    assert publisher.ack_wait_s == TIMEOUT_S
    assert publisher.outbox.count() == 2
    start = clock.now
    assert run(publisher, clock, start + 15)[0] - start <= TIMEOUT_S + 1


def test_a_reconnect_resets_the_wait(publisher: Publisher, clock: Clock) -> None:
    run(publisher, clock, 1000 + 200)
    assert publisher.ack_wait_s == TIMEOUT_S * ACK_BACKOFF_MAX
    publisher._on_connect(publisher.client, None, None, 0)
    assert publisher.ack_wait_s == TIMEOUT_S
