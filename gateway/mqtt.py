"""MQTT on paho-mqtt 2.x: the client factory (credentials, TLS, will) that the gateway's
publisher, the ingest and the dashboard share.

paho runs its network loop in a thread: about four times aiomqtt's QoS 1 rate on this kind of
machine (FACTS.md). Callbacks hop back into asyncio through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from daq.config import LoadedConfig, MqttLogin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


def make_client(
    loaded: LoadedConfig,
    client_id: str,
    *,
    will: Will | None = None,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
    manual_ack: bool = False,
    login: MqttLogin | None = None,
) -> tuple[mqtt.Client, Properties]:
    """An MQTT v5 client configured from the config's ``mqtt`` section (not yet connected).
    ``login``: the role's own account (``gateways[].mqtt_login``, ``ingest.mqtt_login``,
    ``dashboard.mqtt_login``, what ``daq broker access`` writes into the broker's files), else
    the site-wide ``mqtt.username``.

    Returns the client and the CONNECT properties to pass to ``connect``.
    """
    cfg = loaded.config.mqtt
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if login is not None:
        client.username_pw_set(login.username,
                               loaded.secret(login.password, login.password_file) or None)
    elif cfg.username:  # an empty ${VAR:-} means no authentication
        client.username_pw_set(cfg.username,
                               loaded.secret(cfg.password, cfg.password_file) or None)
    if cfg.tls is not None:
        ctx = ssl.create_default_context(cafile=loaded.resolve(cfg.tls.ca_file)
                                         if cfg.tls.ca_file else None)
        if cfg.tls.cert_file:
            ctx.load_cert_chain(
                loaded.resolve(cfg.tls.cert_file),
                loaded.resolve(cfg.tls.key_file) if cfg.tls.key_file else None,
            )
        if cfg.tls.insecure:
            ctx.check_hostname = False
        client.tls_set_context(ctx)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    # 0 = no limit inside paho. With a limit, paho scans every in-flight message after each
    # PUBACK (_update_inflight): O(n) per ack, which cost most of the gateway's CPU at 2 000
    # in flight. The Publisher bounds what is in flight itself (its window).
    client.max_inflight_messages_set(0)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    return client, props


class LinkLog:
    """One log line when the broker cannot be reached or the connection drops, one when it is
    back — never one per reconnect attempt, never silence (an operator must see an outage).

    Call :meth:`up` from ``on_connect`` (success) and :meth:`down` from ``on_connect`` (refused)
    and ``on_disconnect``; :meth:`watch` makes paho report failed connection attempts."""

    def __init__(self, who: str, loaded: LoadedConfig) -> None:
        cfg = loaded.config.mqtt
        self.who = who
        self.where = f"{cfg.host}:{cfg.port}"
        self.is_down = False
        self._lock = threading.Lock()

    def watch(self, client: mqtt.Client) -> None:
        client.on_connect_fail = lambda _c, _u: self.down("cannot connect")

    def up(self) -> None:
        with self._lock:
            was_down, self.is_down = self.is_down, False
        if was_down:
            log.warning("%s: MQTT broker %s reachable again", self.who, self.where)
        else:
            log.info("%s: MQTT connected to %s", self.who, self.where)

    def down(self, why: object) -> None:
        with self._lock:
            was_down, self.is_down = self.is_down, True
        if not was_down:
            log.warning("%s: MQTT broker %s unreachable (%s); retrying", self.who, self.where,
                        why)


def unique_client_id(prefix: str, *parts: str) -> str:
    """A client id no other client has: the broker disconnects a client when another one
    connects with its id, so two instances in one process must not share one."""
    return "-".join((prefix, *parts, socket.gethostname(), str(os.getpid()),
                     secrets.token_hex(3)))


def connect_async(
    loaded: LoadedConfig, client: mqtt.Client, props: Properties, *, clean_start: bool = True
) -> None:
    """Start connecting in paho's loop thread; paho reconnects by itself after that."""
    cfg = loaded.config.mqtt
    client.connect_async(
        cfg.host,
        cfg.port,
        keepalive=cfg.keepalive_s,
        clean_start=clean_start,
        properties=props,
    )
    client.loop_start()
