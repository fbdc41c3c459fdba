"""The one poll loop every driver uses: requests in order, one result per channel.

A driver describes a poll as a sequence of requests, each serving some channels (a Modbus
read plan serves several, a DL/T 645 data identifier or an instrument's command one), and
supplies a *fetch* function that performs one request and returns one outcome per channel.
:func:`poll` does the rest, the same way for every protocol:

* **A timeout ends the poll.** When a request raises :class:`DeviceTimeout` or
  :class:`DeviceConnectionError`, its channels and those of every remaining request get that
  error without being sent, so a dead device holds a shared bus for one timeout per poll,
  not one per request. Any other :class:`DriverError` (a device exception, a protocol or
  decode error) affects only the channels of its own request.
* **Every channel gets a** :class:`ChannelResult`, never ``None``, stamped when its request's
  answer (or failure) arrived.
* :func:`engineering_value` (``raw × scale + offset``) is applied here, once, for all drivers.

Fetch functions raise only ``DriverError``; anything else is a bug and propagates (the
gateway's coordinator reports it as :attr:`Reason.INTERNAL`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from daq.model import Reason
from drivers.errors import DeviceConnectionError, DeviceTimeout, DriverError
from drivers.result import Channel, ChannelResult, RawValue, engineering_value

__all__ = ["ENDS_THE_POLL", "Decoded", "Fetch", "Outcome", "poll"]

ENDS_THE_POLL = (DeviceTimeout, DeviceConnectionError)
"""The errors after which a poll's remaining requests are not sent."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A channel's outcome other than a plain good value: a value the device flags as not
    settled (``uncertain``), or a per-channel ``error`` with whatever raw value arrived
    (e.g. a non-finite float)."""

    raw: RawValue | None
    error: DriverError | None = None
    uncertain: Reason | None = None


Outcome = RawValue | Decoded
"""One channel's outcome of a request: its raw value, or a :class:`Decoded`."""

R = TypeVar("R")
Fetch = Callable[[R], Awaitable[Sequence[Outcome]]]


async def poll(
    requests: Sequence[tuple[R, Sequence[Channel]]],
    fetch: Fetch[R],
    *,
    pause_s: float = 0.0,
) -> list[ChannelResult]:
    """Run ``fetch(request)`` for each ``(request, channels)`` in order.

    ``fetch`` returns one outcome per channel of its request, in the same order. Returns one
    result per channel, in request order. ``pause_s`` is waited between two requests that
    are sent (devices that need a breath between requests).
    """
    results: list[ChannelResult] = []
    abort: DriverError | None = None
    sent = 0
    for request, channels in requests:
        if abort is not None:
            ts = time.time_ns()
            results.extend(ChannelResult(ch, ts, None, None, abort) for ch in channels)
            continue
        if sent and pause_s:
            await asyncio.sleep(pause_s)
        sent += 1
        try:
            outcomes = await fetch(request)
        except DriverError as err:
            ts = time.time_ns()
            results.extend(ChannelResult(ch, ts, None, None, err) for ch in channels)
            if isinstance(err, ENDS_THE_POLL):
                abort = err
            continue
        ts = time.time_ns()
        append = results.append  # the hot path: bound once per request
        for ch, out in zip(channels, outcomes, strict=True):
            if not isinstance(out, Decoded):  # a plain raw value
                append(ChannelResult(ch, ts, out, engineering_value(out, ch.scale, ch.offset)))
            elif out.error is not None:
                results.append(ChannelResult(ch, ts, out.raw, None, out.error))
            elif out.raw is None:
                raise ValueError(f"{ch.id}: a decoded outcome needs a raw value or an error")
            else:
                results.append(ChannelResult(ch, ts, out.raw,
                                             engineering_value(out.raw, ch.scale, ch.offset),
                                             None, out.uncertain))
    return results
