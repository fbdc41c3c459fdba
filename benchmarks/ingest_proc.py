"""The ingest as a benchmark process: ``python -m benchmarks.ingest_proc CONFIG SAMPLES``.

Runs :class:`gateway.ingest.service.Ingest` unchanged (what ``daq ingest`` runs) with an
``on_written`` callback that records, for every ``SAMPLE_EVERY``-th reading of each written
batch, its acquisition time and the time the storage write returned (the end-to-end latency
acquisition → stored). JSON lines on stdout:

* ``{"kind": "subscribed"}`` once the subscription is in place;
* SIGUSR1 → a snapshot of the ingest's counters;
* SIGTERM / SIGINT → stop (write what has arrived, disconnect), save the latency samples to
  ``SAMPLES`` (``.npy``: rows of ``(ts_ns, written_ns)``) and print the final counters.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from array import array
from typing import Any

import numpy as np

from daq.config import load_config
from daq.model import Reading
from gateway.ingest.service import Ingest
from gateway.storage import open_storage

SAMPLE_EVERY = 7  # 7 is prime to the 14 channels of a poll: every channel gets sampled


class Latency:
    def __init__(self) -> None:
        self.ts = array("q")
        self.written = array("q")
        self._lock = threading.Lock()

    def __call__(self, readings: list[Reading]) -> None:
        now = time.time_ns()
        sample = [r.ts_ns for r in readings[::SAMPLE_EVERY]]
        with self._lock:
            self.ts.extend(sample)
            self.written.extend([now] * len(sample))

    def save(self, path: str) -> None:
        with self._lock:
            data = np.empty((len(self.ts), 2), dtype=np.int64)
            data[:, 0] = np.frombuffer(self.ts, dtype=np.int64)
            data[:, 1] = np.frombuffer(self.written, dtype=np.int64)
        np.save(path, data)


def emit(ing: Ingest, kind: str) -> None:
    doc: dict[str, Any] = {"kind": kind, "t_ns": time.time_ns(),
                           **dataclasses.asdict(ing.stats)}
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main(config_path: str, samples_path: str) -> None:
    # Python-level handlers: whichever thread the kernel picks (numpy's BLAS threads do not
    # block signals), the handler runs in the main thread
    pending: list[int] = []
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: pending.append(s))
    loaded = load_config(config_path)
    latency = Latency()
    ing = Ingest(loaded, open_storage(loaded), on_written=latency)
    ing.start()
    if not ing.wait_subscribed(20):
        raise SystemExit("ingest did not subscribe within 20 s")
    emit(ing, "subscribed")
    while True:
        time.sleep(0.02)
        while pending:
            if pending.pop(0) != signal.SIGUSR1:
                ing.stop(drain_s=10.0)
                latency.save(samples_path)
                emit(ing, "final")
                return
            emit(ing, "snapshot")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
