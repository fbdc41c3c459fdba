"""Serial text instruments: a sans-I/O line codec, instrument dialects (SCPI DMM, PRT
readout, MT-SICS balance, multifunction calibrator source, generic profile-driven) and async
drivers over injected streams."""

from drivers.text.codec import (
    InstrumentReportedError,
    InvalidReading,
    LineDecoder,
    RangeReportedError,
    TextProtocolError,
    encode_line,
)
from drivers.text.driver import (
    CalibratorDriver,
    GenericTextDriver,
    MtSicsBalanceDriver,
    Opener,
    PrtReadoutDriver,
    ScpiDmmDriver,
    TextLink,
    tcp_opener,
    tty_opener,
)
from drivers.text.errors import InstrumentError, InstrumentOutOfRange
from drivers.text.generic import GenericReading, GenericTextProfile, parse_generic_reply
from drivers.text.mtsics import WeightResult, parse_weight_reply
from drivers.text.scpi import DmmFunction, Identity

__all__ = [
    "CalibratorDriver",
    "DmmFunction",
    "GenericReading",
    "GenericTextDriver",
    "GenericTextProfile",
    "Identity",
    "InstrumentError",
    "InstrumentOutOfRange",
    "InstrumentReportedError",
    "InvalidReading",
    "LineDecoder",
    "MtSicsBalanceDriver",
    "Opener",
    "PrtReadoutDriver",
    "RangeReportedError",
    "ScpiDmmDriver",
    "TextLink",
    "TextProtocolError",
    "WeightResult",
    "encode_line",
    "parse_generic_reply",
    "parse_weight_reply",
    "tcp_opener",
    "tty_opener",
]
