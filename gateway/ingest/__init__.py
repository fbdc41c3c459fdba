"""The central side: MQTT → storage, acknowledging each message only after it is stored
(:mod:`.service`). The backends it writes into are :mod:`gateway.storage`."""

from gateway.ingest.service import Ingest, IngestStats

__all__ = ["Ingest", "IngestStats"]
