"""Reading a policy file: the only file I/O of the policy pipeline.

YAML is read with ruamel.yaml so that every key keeps its line and column;
``${VAR}`` and ``${VAR:-default}`` are interpolated in string values. The
result is plain data plus a position map that later stages use to point
problems at the right place in the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from turnout.errors import PolicyError, Problem
from turnout.types import JSONPath

__all__ = ["Document", "load_document", "parse_document"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# ruamel's round-trip parser gives up on some valid YAML while attaching comments
# to nodes ("overlap in comment [CommentToken('# ...', line: 20, col: 48), ...]"),
# e.g. a key with a trailing comment, a bare value on the next line, a blank line.
_INDENTATION = re.compile(
    r"expected <block end>|mapping values are not allowed|could not find expected ':'"
    r"|expected a comment or a line break"
)
_COMMENT_OVERLAP = re.compile(r"overlap in comment \[CommentToken\(.*?, line: (\d+), col: (\d+)\)")


@dataclass(frozen=True)
class Document:
    """A parsed policy file: plain data, and where each piece of it came from.

    ``missing_env`` maps the path of every string that referenced an unset
    environment variable (with no default) to that variable's name; the value
    at that path is the empty string. Whether that is an error depends on where
    it is (a missing API key only disables its provider), so compile decides.
    """

    data: Any
    file: str
    positions: Mapping[JSONPath, tuple[int, int]] = field(default_factory=dict)
    missing_env: Mapping[JSONPath, str] = field(default_factory=dict)

    def locate(self, path: JSONPath) -> tuple[int | None, int | None]:
        """Line and column (1-based) of ``path`` or of its nearest located parent."""
        path = tuple(path)
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (None, None))

    def problem(self, path: JSONPath, message: str, hint: str | None = None) -> Problem:
        line, column = self.locate(path)
        return Problem(message, file=self.file, line=line, column=column, hint=hint)


def load_document(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Document:
    """Read and parse a policy file; raise PolicyError if it is not readable YAML."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        where = Path(path).absolute().parent
        hint = (
            f"looked in {where}; pass the policy's path (--config PATH, or TURNOUT_CONFIG), "
            "or run `turnout init` to write a starter routes.yaml here"
        )
        raise PolicyError([Problem("file not found", file=name, hint=hint)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(f"cannot read file: {exc}", file=name)]) from None
    return parse_document(text, file=name, env=env)


def _unmarked_problem(exc: Exception, text: str, file: str) -> Problem:
    """A Problem for a ruamel error without a mark (e.g. a control character, which
    its reader reports by character offset): the line and column when it says."""
    position = getattr(exc, "position", None)
    if not isinstance(position, int) or not 0 <= position <= len(text):
        return Problem(f"invalid YAML: {exc}", file=file)
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    character = getattr(exc, "character", None)
    reason = getattr(exc, "reason", None) or "not allowed"
    message = (
        f"invalid YAML: unacceptable character U+{character:04X} ({reason})"
        if isinstance(character, int)
        else f"invalid YAML: {reason}"
    )
    hint = "remove control characters from the file (a tab or newline is fine)"
    return Problem(message, file=file, line=line, column=column, hint=hint)


def parse_document(
    text: str, *, file: str = "<policy>", env: Mapping[str, str] | None = None
) -> Document:
    """Parse policy YAML text; raise PolicyError naming the place of a syntax error."""
    try:
        raw = _load_rt(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        message = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        hint = None
        lines = text.splitlines()
        if line is not None and 0 < line <= len(lines) and "${" in lines[line - 1]:
            hint = 'quote values that contain ${...}, e.g. api_key: "${OPENAI_API_KEY}"'
        elif _INDENTATION.search(message):
            hint = (
                "check the indentation of this line and the one above: keys of one mapping "
                "start in the same column, and a key's contents are indented further (spaces)"
            )
        raise PolicyError(
            [Problem(message, file=file, line=line, column=column, hint=hint)]
        ) from None
    except Exception as exc:  # ruamel raises a few unmarked errors on odd input
        raise PolicyError([_unmarked_problem(exc, text, file)]) from None
    reader = _Reader(os.environ if env is None else env)
    data = reader.convert(raw, ())
    lc = getattr(raw, "lc", None)
    if lc is not None and lc.line is not None and lc.col is not None:
        reader.positions[()] = (lc.line + 1, lc.col + 1)
    else:  # a bare tagged scalar (``!0``) has an lc without a position
        reader.positions[()] = (1, 1)
    return Document(data, file, reader.positions, reader.missing_env)


def _load_rt(text: str) -> Any:
    """Round-trip load; where ruamel trips over its own comment bookkeeping, blank
    out (with spaces, so every position stays put) the comment it names and retry:
    comments carry no data, and the document then means what it says."""
    for _ in range(text.count("#") + 1):
        try:
            return YAML(typ="rt").load(text)
        except NotImplementedError as exc:
            found = _COMMENT_OVERLAP.search(str(exc))
            if found is None:
                raise
            line, column = int(found.group(1)), int(found.group(2))
            lines = text.split("\n")
            if not (line < len(lines) and lines[line][column : column + 1] == "#"):
                raise
            lines[line] = lines[line][:column] + " " * (len(lines[line]) - column)
            text = "\n".join(lines)
    return YAML(typ="rt").load(text)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.positions: dict[JSONPath, tuple[int, int]] = {}
        self.missing_env: dict[JSONPath, str] = {}

    def convert(self, node: Any, path: JSONPath) -> Any:
        if isinstance(node, CommentedMap):
            out: dict[Any, Any] = {}
            for key, value in node.items():
                child = (*path, key)
                try:
                    line, col = node.lc.key(key)
                    self.positions[child] = (line + 1, col + 1)
                except (KeyError, TypeError):
                    pass
                out[key] = self.convert(value, child)
            return out
        if isinstance(node, CommentedSeq):
            items = []
            for index, value in enumerate(node):
                child = (*path, index)
                try:
                    line, col = node.lc.item(index)
                    self.positions[child] = (line + 1, col + 1)
                except (KeyError, TypeError, IndexError):
                    pass
                items.append(self.convert(value, child))
            return items
        if isinstance(node, str):
            return self._interpolate(str(node), path)
        return node

    def _interpolate(self, text: str, path: JSONPath) -> str:
        if "${" not in text:
            return text

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = self.env.get(name)
            if value:
                return value
            if default is not None:
                return default
            self.missing_env[path] = name
            return ""

        return _ENV_REF.sub(substitute, text)
