"""The gateway's acquisition pipeline: one coordinator per device polls its driver
(:mod:`.poller`), each poll passes the calibration stage (:mod:`.calibration_stage`), the
drift watch (:mod:`.driftwatch`) and the alarm supervisor (:mod:`.alarming`), then the durable
outbox and the MQTT publisher (:mod:`.publisher`); :mod:`.service` wires them for one gateway.
"""

from gateway.acquisition.service import GatewayService

__all__ = ["GatewayService"]
