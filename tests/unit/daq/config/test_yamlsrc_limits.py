"""A config file is untrusted input with a budget: an alias cycle, a "billion laughs"
document, deep nesting, a huge file or an unconstructible value each give one located
``FILE:LINE: message`` quickly — never a traceback, minutes of work or gigabytes of memory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import daq.config.yamlsrc
from daq.config.yamlsrc import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    SourceErrors,
    load_yaml,
    load_yaml_text,
)

REPO = Path(__file__).resolve().parents[4]

# nine levels of nine aliases each: 9**9 (387 million) strings once expanded
BILLION_LAUGHS = "a: &a [lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))


def error_of(text: str, name: str = "site.yaml") -> str:
    with pytest.raises(SourceErrors) as info:
        load_yaml_text(text, name, env={})
    (err,) = info.value.errors
    return str(err)


def test_an_alias_to_its_own_collection_is_located() -> None:
    assert error_of("x: 1\na: &a [1, *a]\n") == (
        "site.yaml:2: a[1]: alias to a collection that contains it")
    assert error_of("a: &m\n  b:\n    c: *m\n") == (
        "site.yaml:3: a.b.c: alias to a collection that contains it")


def test_billion_laughs_is_refused_in_a_fraction_of_a_second() -> None:
    t0 = time.perf_counter()
    err = error_of(BILLION_LAUGHS)
    assert time.perf_counter() - t0 < 0.5
    # located at the alias a person wrote where the budget ran out
    assert err == (f"site.yaml:6: f[6]: more than {MAX_VALUES} values once aliases are "
                   "expanded")


def test_too_many_values_are_refused_while_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daq.config.yamlsrc, "MAX_VALUES", 1000)  # the real one takes seconds
    assert load_yaml_text("a:\n" + "- 1\n" * 997, "s", env={}).data == {"a": [1] * 997}
    assert error_of("a:\n" + "- 1\n" * 998) == "site.yaml:999: more than 1000 values"


def test_aliases_nested_through_each_other_too_deep() -> None:
    text = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 200))
    err = error_of(text)
    assert err.endswith(f"nested deeper than {MAX_DEPTH} levels (through aliases)")
    assert err.startswith("site.yaml:")


def test_deep_nesting_in_the_text_is_refused_before_recursion() -> None:
    t0 = time.perf_counter()
    assert error_of("a: " + "[" * 200_000) == (
        f"site.yaml:1: nested deeper than {MAX_DEPTH} levels")
    assert time.perf_counter() - t0 < 1.0
    assert error_of("a:\n" + "".join(" " * i + "- \n" for i in range(1, 100))).startswith(
        "site.yaml:")


def test_a_legitimate_alias_still_works_and_keeps_its_line() -> None:
    loc = load_yaml_text(
        "line: &line {port: /dev/ttyUSB0, baudrate: 9600}\n"
        "buses:\n"
        "  - {id: a, serial: *line}\n"
        "  - {id: b, serial: *line}\n", "site.yaml", env={})
    line = {"port": "/dev/ttyUSB0", "baudrate": 9600}
    assert loc.data == {"line": line, "buses": [{"id": "a", "serial": line},
                                                {"id": "b", "serial": line}]}
    assert loc.line_of(("buses", 1, "serial")) == 4  # the alias's line, not the anchor's
    assert loc.line_of(("buses", 1, "serial", "port")) == 1  # where the value is written
    scalar = load_yaml_text("a: &v 5\nb: [*v, *v]\n", "s", env={})
    assert scalar.data == {"a": 5, "b": [5, 5]}
    key = load_yaml_text("k: &k port\nm: {*k : 1}\n", "s", env={})
    assert key.data == {"k": "port", "m": {"port": 1}}


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    p = tmp_path / "big.yaml"
    with p.open("wb") as f:
        f.write(b"a: 1\n")
        f.seek(MAX_FILE_BYTES)  # sparse: the size without writing megabytes
        f.write(b"\n")
    with pytest.raises(SourceErrors) as info:
        load_yaml(p)
    assert str(info.value) == (
        f"{p}:1: file larger than 4 MiB, the limit for config files")
    with pytest.raises(SourceErrors):
        load_yaml_text("#" * (MAX_FILE_BYTES + 1), "t.yaml")


def test_a_file_at_the_limit_loads(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_bytes(b"a: 1\n" + b"#" * (MAX_FILE_BYTES - 6) + b"\n")
    assert load_yaml(p).data == {"a": 1}


def test_not_utf8_and_unconstructible_values_are_located(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(SourceErrors) as info:
        load_yaml(p)
    assert str(info.value) == f"{p}:2: not UTF-8 text"
    assert error_of("a: 1\nb: 2024-13-45\n") == (
        "site.yaml:2: b: invalid value: month must be in 1..12")
    assert error_of("b: !python/object x\n").startswith(
        "site.yaml:1: b: invalid value: could not determine a constructor for the tag")


@pytest.mark.parametrize("case", ["cycle", "laughs", "size"])
def test_config_check_exits_2_with_the_location(tmp_path: Path, case: str) -> None:
    p = tmp_path / "site.yaml"
    if case == "cycle":
        p.write_text("enterprise: &e {id: x, name: *e}\n")
    elif case == "laughs":
        p.write_text(BILLION_LAUGHS)
    else:
        with p.open("wb") as f:
            f.truncate(MAX_FILE_BYTES + 1)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "daq.cli", "config", "check", str(p)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"{p}:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.perf_counter() - t0 < 10  # a process start, not minutes
