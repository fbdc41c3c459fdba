"""YAML loading that remembers where every value came from.

Config and profile errors must name the file, the line and the field
(``FILE:LINE: field.path: message``). This module loads YAML into plain Python data plus a map
from each value's path to its line, substitutes ``${ENV_VAR}`` (and ``${ENV_VAR:-default}``)
in strings, and turns pydantic validation errors into such messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from daq.errors import DaqError

M = TypeVar("M", bound=BaseModel)

Path_ = tuple[str | int, ...]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class SourceError:
    """One error, located in a source file."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class SourceErrors(DaqError):
    """One or more located errors; ``str()`` gives one line per error."""

    def __init__(self, errors: list[SourceError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class Located:
    """Data loaded from a YAML file, with the line (1-based) of every path in it."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)

    def error(self, path: Path_, message: str) -> SourceError:
        return SourceError(self.file, self.line_of(path), dotted(path), message)


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_yaml(file: str | Path, env: Mapping[str, str] | None = None) -> Located:
    """Load a YAML file; raise :class:`SourceErrors` for syntax errors and missing env vars."""
    name = str(file)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceErrors([SourceError(name, 1, "", f"cannot read: {exc.strerror}")]) from exc
    return load_yaml_text(text, name, env)


def load_yaml_text(text: str, name: str, env: Mapping[str, str] | None = None) -> Located:
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        raise SourceErrors([SourceError(name, line, "", msg)]) from exc
    except yaml.YAMLError as exc:
        raise SourceErrors([SourceError(name, 1, "", f"YAML error: {exc}")]) from exc
    located = Located(name, None)
    errors: list[SourceError] = []
    if node is None:
        located.data = {}
        return located
    located.data = _convert(node, (), located, env, errors)
    if errors:
        raise SourceErrors(errors)
    return located


def _convert(
    node: yaml.Node, path: Path_, loc: Located, env: Mapping[str, str], errors: list[SourceError]
) -> Any:
    loc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if key in out:
                errors.append(
                    SourceError(loc.file, key_node.start_mark.line + 1, dotted((*path, key)),
                                "duplicate key")
                )
            out[key] = _convert(value_node, (*path, key), loc, env, errors)
            loc.lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(n, (*path, i), loc, env, errors) for i, n in enumerate(node.value)]
    value = yaml.SafeLoader("").construct_object(node, deep=True)
    if isinstance(value, str) and "${" in value:
        value = _substitute(value, path, loc, env, errors)
    return value


def _substitute(
    value: str, path: Path_, loc: Located, env: Mapping[str, str], errors: list[SourceError]
) -> str:
    def repl(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        if var in env:
            return env[var]
        if default is not None:
            return default
        errors.append(loc.error(path, f"environment variable {var} is not set"))
        return ""

    return _ENV.sub(repl, value)


def validated(model: type[M], loc: Located) -> M:
    """``model`` validated from ``loc``'s data, or :class:`SourceErrors` with every
    problem as ``FILE:LINE: field: message``."""
    try:
        return model.model_validate(loc.data)
    except ValidationError as exc:
        raise SourceErrors(validation_errors(exc, loc)) from exc


def validation_errors(exc: ValidationError, loc: Located) -> list[SourceError]:
    """Turn a pydantic error into located errors, one per problem, sorted by line."""
    out = []
    for err in exc.errors():
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        out.append(loc.error(_clean_loc(err["loc"], loc.data), msg))
    return sorted(out, key=lambda e: e.line)


def _clean_loc(loc: tuple[Any, ...], data: Any) -> Path_:
    """Drop what pydantic inserts into locations that is not in the data: the tag of a
    discriminated union (``'modbus-tcp'``) and validator names (``'function-after[…]'``)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if (isinstance(node, dict) and isinstance(part, str) and part not in node
                and part in node.values()):
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)
