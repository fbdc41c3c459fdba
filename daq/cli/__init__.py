"""The ``daq`` command line: the top floor, above every runtime package.

One module per command group (:mod:`daq.cli.main` holds the group and registers the others);
the wiring of whole processes lives here too (:mod:`daq.cli.demo`, :mod:`daq.cli.read`).
Imports of the runtime happen inside the commands, so ``daq --help`` stays fast.
"""

from daq.cli.main import main

__all__ = ["main"]
