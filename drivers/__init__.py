"""Protocol codecs (sans-I/O) and instrument drivers (codec + transport)."""

__all__: list[str] = []
