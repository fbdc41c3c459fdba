"""YAML loading that remembers where every value came from.

Config and profile errors must name the file, the line and the field
(``FILE:LINE: field.path: message``). This module loads YAML into plain Python data plus a map
from each value's path to its line, substitutes ``${ENV_VAR}`` (and ``${ENV_VAR:-default}``)
in strings, and turns pydantic validation errors into such messages.

A config file is untrusted input with a budget: at most :data:`MAX_FILE_BYTES` of UTF-8,
nested at most :data:`MAX_DEPTH` levels, holding at most :data:`MAX_VALUES` values once its
aliases (``*name``) are expanded. An alias to a collection that contains it, or a "billion
laughs" document, is a located error found in a fraction of a second, not a ``RecursionError``
or minutes of work and gigabytes of memory.
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

MAX_FILE_BYTES = 4 * 1024 * 1024
"""A config, profile or records file larger than this is refused (4 MiB; the largest shipped
file is about 10 kB)."""
MAX_DEPTH = 64
"""Nesting deeper than this (in the text, or through aliases) is refused; a site file nests
about 8 levels."""
MAX_VALUES = 100_000
"""At most this many values (every key, scalar and collection) in a file, those an alias
stands for counted each time it is used: counted while composing (PyYAML parses about
30 000 values a second, so a file over the limit is refused within seconds) and again while
aliases are expanded (a "billion laughs" stops in about 0.1 s). The shipped files hold a few
hundred."""

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
    """Load a YAML file; raise :class:`SourceErrors` for syntax errors, missing env vars and a
    file over the limits (size, depth, number of values with aliases expanded)."""
    name = str(file)
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SourceErrors([SourceError(name, 1, "", f"cannot read: {exc.strerror}")]) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise SourceErrors([SourceError(name, 1, "", _too_large())])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SourceErrors([SourceError(name, line, "", "not UTF-8 text")]) from exc
    return load_yaml_text(text, name, env)


def _too_large() -> str:
    return f"file larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the limit for config files"


def load_yaml_text(text: str, name: str, env: Mapping[str, str] | None = None) -> Located:
    """Like :func:`load_yaml`, from text already read (``name`` is the file in messages)."""
    env = os.environ if env is None else env
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise SourceErrors([SourceError(name, 1, "", _too_large())])
    try:
        node = yaml.compose(text, Loader=_Loader)
    except _LimitError as exc:
        raise SourceErrors([SourceError(name, exc.line, "", exc.message)]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        raise SourceErrors([SourceError(name, line, "", msg)]) from exc
    except yaml.YAMLError as exc:
        raise SourceErrors([SourceError(name, 1, "", f"YAML error: {exc}")]) from exc
    located = Located(name, None)
    if node is None:
        located.data = {}
        return located
    conv = _Converter(located, env)
    located.data = conv.convert(node, (), 1)
    if conv.errors:
        raise SourceErrors(conv.errors)
    return located


class _LimitError(DaqError):
    """The text nests deeper than :data:`MAX_DEPTH` or holds more than :data:`MAX_VALUES`
    values (found while composing; :func:`load_yaml_text` turns it into SourceErrors)."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.line = mark.line + 1 if mark is not None else 1


class _AliasNode(yaml.Node):
    """Where an alias (``*name``) stood: the node it names and the alias's own position (the
    composer alone would hand back the anchored node, positioned at its anchor)."""

    id = "alias"

    def __init__(self, target: yaml.Node, start_mark: Any, end_mark: Any) -> None:
        super().__init__(target.tag, target.value, start_mark, end_mark)
        self.target = target


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, composing only: nesting limited while composing (PyYAML's
    composer recurses once per level), aliases kept visible as :class:`_AliasNode`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            assert node is not None  # an undefined alias raises
            return _AliasNode(node, event.start_mark, event.end_mark)
        self._depth += 1
        self._values += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitError(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            if self._values > MAX_VALUES:
                raise _LimitError(f"more than {MAX_VALUES} values", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Converter:
    """Node graph → plain data with the line of every path; ``${ENV}`` substituted; aliases
    expanded within :data:`MAX_DEPTH` and :data:`MAX_VALUES`."""

    def __init__(self, loc: Located, env: Mapping[str, str]) -> None:
        self.loc = loc
        self.env = env
        self.errors: list[SourceError] = []
        self._open: set[int] = set()  # the collections being converted (an alias's cycle)
        self._values = 0  # values converted so far, those of aliases each time
        self._outer: tuple[yaml.Node, Path_] | None = None  # the alias being expanded
        self._scalars = yaml.SafeLoader("")  # one constructor, not one per scalar

    def _limit(self, node: yaml.Node, path: Path_, message: str) -> SourceErrors:
        """A limit crossed: located at the outermost alias being expanded, if any (the one a
        person wrote at that place), else at ``node``."""
        if self._outer is not None:
            node, path = self._outer
        return SourceErrors([SourceError(self.loc.file, node.start_mark.line + 1,
                                         dotted(path), message)])

    def convert(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        if isinstance(node, _AliasNode):
            if id(node.target) in self._open:
                self._outer = None
                raise self._limit(node, path, "alias to a collection that contains it")
            outermost = self._outer is None
            if outermost:
                self._outer = (node, path)
            try:
                out = self.convert(node.target, path, depth)
            finally:
                if outermost:
                    self._outer = None
            self.loc.lines[path] = node.start_mark.line + 1
            return out
        if depth > MAX_DEPTH:
            raise self._limit(node, path, f"nested deeper than {MAX_DEPTH} levels "
                              "(through aliases)")
        self._values += 1
        if self._values > MAX_VALUES:  # only through aliases: the composer counted the rest
            raise self._limit(node, path, f"more than {MAX_VALUES} values once aliases are "
                              "expanded")
        self.loc.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            self._open.add(id(node))
            try:
                return self._collection(node, path, depth)
            finally:
                self._open.discard(id(node))
        return self._scalar(node, path)

    def _collection(self, node: yaml.MappingNode | yaml.SequenceNode, path: Path_,
                    depth: int) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(n, (*path, i), depth + 1) for i, n in enumerate(node.value)]
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, _AliasNode):  # *name as a key: the value it names
                key_node = key_node.target
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            key_line = key_node.start_mark.line + 1
            if key in out:
                self.errors.append(SourceError(self.loc.file, key_line, dotted((*path, key)),
                                               "duplicate key"))
            out[key] = self.convert(value_node, (*path, key), depth + 1)
            self.loc.lines[(*path, key)] = key_line
        return out

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            value = self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # an unknown tag (``!foo``), ``!!int abc``, a date like 2024-13-45
            problem = getattr(exc, "problem", None) or str(exc)
            self.errors.append(self.loc.error(path, f"invalid value: {problem}"))
            return None
        if isinstance(value, str) and "${" in value:
            value = _substitute(value, path, self.loc, self.env, self.errors)
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
