"""An id the site file does not have is one clear line and exit 2, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from daq.cli.main import main
from daq.config import UnknownGatewayError, load_config
from daq.errors import DaqError
from daq.paths import builtin_data

DEMO = str(builtin_data("demo.yaml"))


def test_an_unknown_gateway_is_a_daq_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownGatewayError) as caught:
        load_config(DEMO).gateway("nope")
    assert isinstance(caught.value, DaqError)
    assert str(caught.value).startswith("no gateway 'nope' in ")
    assert str(caught.value).endswith("(gateways: gw-01)")


def test_daq_gateway_with_an_unknown_id_says_so_and_exits_2() -> None:
    result = CliRunner().invoke(main, ["gateway", DEMO, "--gateway", "nope"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "no gateway 'nope'" in result.output
