"""YAML from files a user or a mounted Secret provides, with bounds on what parsing may cost.

PyYAML's safe loader refuses arbitrary objects but not cost: an alias names a node that was
already built, so nine aliases to nine aliases make 9**9 entries out of 700 bytes for any
code that walks the result (the "billion laughs"), merge keys (`<<: *a`) copy entries at
load time, a recursive alias is a cycle, and deep nesting recurses once per level in the
composer until Python's recursion limit ends it with a traceback. Here a document is
composed first (bounded depth), then its size is counted as if every alias were a copy
(cycles refused), and only a document within `MAX_NODES` is constructed. Files are read
up to `MAX_BYTES` and must be UTF-8. Every refusal is a YamlError whose str() is one line.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import one_line

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000  # scalars, sequences and mappings, every alias counted where it is used


class YamlError(ValueError):
    """One line: where (`line`, 1-based, when known) and why the document was refused."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.message, self.line = message, line

    def at(self, path: str) -> str:
        """'path:line: message', the way compilers name a place in a file."""
        return f"{path}:{self.line}: {self.message}" if self.line else f"{path}: {self.message}"


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader with a depth limit and an expansion limit (subclass it to add constructors)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlError(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        expanded_size(node)
        return super().construct_document(node)


def expanded_size(root: yaml.Node, limit: int = MAX_NODES) -> int:
    """Nodes in the document with every alias expanded; YamlError past `limit` or on a cycle.
    Iterative, memoized per node: linear in the composed graph whatever the expansion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > limit:
                raise YamlError(f"more than {limit} values once aliases are expanded (an alias bomb?)",
                                node.start_mark.line + 1)
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlError("an alias refers to a node that contains it", node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise YamlError("an alias refers to a node that contains it", child.start_mark.line + 1)
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def loads(text: str) -> Any:
    """One YAML document from text; YamlError (one line) when it is not valid or too costly."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - BoundedLoader is a SafeLoader with bounds
    except YamlError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"invalid YAML ({' '.join(str(problem).split())[:200]})",
                        mark.line + 1 if mark is not None else 0) from None
    except RecursionError:  # not reached within MAX_DEPTH; a last guard all the same
        raise YamlError("nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar no constructor takes (e.g. a huge int)
        raise YamlError(f"invalid value: {one_line(exc)[:200]}") from None


def load_file(path: str, max_bytes: int = MAX_BYTES) -> Any:
    """One YAML document from a file of at most `max_bytes` UTF-8 bytes. OSError when it
    cannot be read; YamlError (one line, without the path) for everything else."""
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise YamlError(f"larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not UTF-8 text (byte {exc.start})", data.count(b"\n", 0, exc.start) + 1) from None
    return loads(text)
