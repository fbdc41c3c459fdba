"""``python -m daq.cli``."""

from daq.cli.main import main

main()
