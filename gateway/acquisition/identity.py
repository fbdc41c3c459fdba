"""The gateway's identity: the Ed25519 key that signs everything it sends.

The key is made at first start when the file does not exist (0600, PKCS#8 PEM) and never
leaves the machine; its public key must be pinned in the ingest's registry (``daq keys pin``)
before the ingest stores anything it signed. The log names the key id, never the key.
"""

from __future__ import annotations

import logging

from daq.config import Gateway, LoadedConfig
from daq.signing import Signer, ensure_private_key

log = logging.getLogger(__name__)


def gateway_signer(loaded: LoadedConfig, gw: Gateway) -> Signer:
    key, made = ensure_private_key(loaded.signing_key_path(gw))
    signer = Signer(key)
    if made:
        log.warning("gateway %s: made a new signing key %s at %s; pin it in the ingest's "
                    "registry (daq keys pin) or its readings are not stored", gw.id,
                    signer.key_id, loaded.signing_key_path(gw))
    else:
        log.info("gateway %s: signing with key %s", gw.id, signer.key_id)
    return signer
