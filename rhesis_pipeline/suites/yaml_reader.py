"""YAML for suite files: PyYAML's safe loader, with two refusals it lacks.

* **Aliases that expand too far.** PyYAML shares an aliased node wherever it is used, so
  a file of a few hundred bytes whose aliases refer to aliases (a "billion laughs") loads
  at once into a document that is billions of nodes once walked: validating, encoding
  and storing it took 49 s and 1.8 GB before failing. :func:`load` measures the
  composed node graph before constructing anything (linear in the file: each distinct
  node is counted once, with the expanded size of its children) and refuses a document
  whose aliases make it larger than :data:`MAX_EXPANDED_NODES` nodes, or that contains
  itself (``&a [*a]``: no JSON can hold it). A document without aliases is bounded by
  the file size (see :data:`rhesis_pipeline.suites.load.MAX_SUITE_BYTES`).
* **Duplicate keys.** YAML requires the keys of a mapping to be unique; PyYAML silently
  keeps the last one. :class:`SuiteLoader` refuses one, naming it and its line. Merge
  keys (``<<: *base``) still override as YAML says.

libyaml's parser (``CSafeLoader``, about four times faster) is used when PyYAML has it.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

#: Nodes a document may have once its aliases are expanded (anchors shared by many tests
#: are fine; a bomb is refused as soon as it is composed).
MAX_EXPANDED_NODES = 1_000_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# PyYAML has no type hints: its classes are Any to mypy, which --strict refuses to
# subclass; "unused-ignore" keeps the plain (non-strict) run quiet about the ignore.
class RefusedYAML(yaml.YAMLError):  # type: ignore[misc, unused-ignore]
    """The document is valid YAML but is refused; ``str()`` says why, in one line."""


class SuiteLoader(_Base):  # type: ignore[misc, unused-ignore]
    """``yaml.SafeLoader`` (libyaml's when available) that refuses duplicate keys."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the base class says so
                    continue
                if duplicate:
                    mark = key_node.start_mark
                    raise RefusedYAML(
                        f"duplicate key {key!r} at line {mark.line + 1} column {mark.column + 1}"
                        "; a key may appear once in a mapping"
                    )
                seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: Node, limit: int = MAX_EXPANDED_NODES) -> tuple[int, bool]:
    """Nodes under *root* once aliases are expanded (counting stops a little past
    *limit*), and whether any node is shared (an alias). Raises RefusedYAML if a node
    contains itself. Each distinct node is visited once; no recursion."""
    size: dict[int, int] = {}
    open_: set[int] = {id(root)}
    shared = False
    stack = [(root, iter(_children(root)))]
    while stack:
        node, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            open_.discard(id(node))
            total = 1 + sum(size[id(c)] for c in _children(node))
            size[id(node)] = min(total, limit + 1)
            continue
        if id(child) in open_:
            raise RefusedYAML(
                f"the node at line {child.start_mark.line + 1} contains itself through an "
                "alias, which no JSON can hold: write the value out"
            )
        if id(child) in size:
            shared = True
            continue
        open_.add(id(child))
        stack.append((child, iter(_children(child))))
    return size[id(root)], shared


def load(text: str) -> Any:
    """The document in *text* (None if it has none). Raises yaml.YAMLError (RefusedYAML
    for a document refused here), ValueError (a number Python will not read) or
    RecursionError (nesting deeper than the pure-Python parser can follow)."""
    loader = SuiteLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        nodes, shared = expanded_size(node)
        if shared and nodes > MAX_EXPANDED_NODES:
            raise RefusedYAML(
                f"the suite file expands aliases past {MAX_EXPANDED_NODES:,} nodes; "
                "write it without YAML aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
