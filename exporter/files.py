"""Reading the operator's files (the config, the web config, key, certificate and CA files):
the one place that does, so that every such file fails the same way, with one line.

Only regular files are read (a FIFO or /dev/zero would block or never end), up to a size
cap, opened without blocking, as UTF-8; an empty file is an error. YAML is parsed without
Python tags, with a cap on nesting; a number of more digits than Python converts, a date
that does not exist, and the like are errors too, not tracebacks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, ClassVar

from llm_pinference.core.text import MAX_JSON_DEPTH, os_reason

from .options import MAX_CONFIG_BYTES, MAX_YAML_NODES, ConfigError, shown


def read_file(path: str | Path, what: str, limit: int = MAX_CONFIG_BYTES) -> str:
    """The text of a small regular file; ConfigError naming `what` and the path if not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:  # ValueError: a NUL or a lone surrogate in the path
        raise ConfigError(f"cannot read {what} {path}: {os_reason(exc)}") from None
    try:
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError(f"{what} {path} is not a regular file")
            data = file.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {os_reason(exc)}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit >> 10} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"{what} {path} is empty")
    return text


def load_yaml(path: str | Path, what: str) -> Any:
    """The YAML document of a file read by `read_file`."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0
        sizes: ClassVar[dict[int, int]] = {}  # node -> the values it stands for, aliases too

        def compose_node(self, parent: Any, index: Any) -> Any:
            # PyYAML composes recursively: refuse deep nesting before Python's stack does.
            self.depth += 1
            if self.depth > MAX_JSON_DEPTH:
                raise ConfigError(f"{path}: nested more than {MAX_JSON_DEPTH} levels deep")
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
            if id(node) not in self.sizes:  # an alias is its anchor's node, counted again
                children = node.value if isinstance(node.value, list) else []
                flat = [n for c in children for n in (c if isinstance(c, tuple) else (c,))]
                size = 1 + sum(self.sizes.get(id(n), 1) for n in flat)
                if size > MAX_YAML_NODES:  # a billion laughs, merge keys included
                    raise ConfigError(f"{path}: expands to more than {MAX_YAML_NODES} values")
                self.sizes[id(node)] = size
            return node

    text = read_file(path, what)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from None
    except ConfigError:
        raise
    except (ValueError, OverflowError):  # a 5,000-digit integer, 2021-02-30, ...
        raise ConfigError(f"{path}: holds a value YAML cannot represent here") from None


def mapping(value: object, where: str) -> dict[str, Any]:
    """A YAML mapping with names for keys (None is an empty one); ConfigError if not."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: key {shown(key)} is not a name")
    return dict(value)
