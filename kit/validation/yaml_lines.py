"""YAML parsed with line numbers, so every problem can name its line."""

from __future__ import annotations

from typing import Any

import yaml


class Located:
    """A YAML document together with the line of every key path in it."""

    def __init__(self, text: str) -> None:
        self.data: Any = yaml.safe_load(text)
        self._node = yaml.compose(text, Loader=yaml.SafeLoader)

    def line_of(self, loc: tuple[str | int, ...]) -> int:
        """1-based line of the deepest node on ``loc`` that exists (1 for the document)."""
        node = self._node
        line = node.start_mark.line + 1 if node is not None else 1
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            key_line, node = child
            line = key_line
        return line

    def repeated_keys(self) -> list[tuple[int, str, int]]:
        """(line, dotted key, line of its first use) of every key a mapping holds twice: YAML keeps the last value and
        drops the first without a word, so the owner's edit may be the one that silently loses."""
        found: list[tuple[int, str, int]] = []
        stack: list[tuple[yaml.Node | None, str]] = [(self._node, "")]
        while stack:
            node, path = stack.pop()
            if isinstance(node, yaml.MappingNode):
                first: dict[str, int] = {}
                for key, value in node.value:
                    name, line = f"{path}{key.value}", key.start_mark.line + 1
                    if key.value in first:
                        found.append((line, name, first[key.value]))
                    first.setdefault(key.value, line)
                    stack.append((value, f"{name}."))
            elif isinstance(node, yaml.SequenceNode):
                stack += [(item, f"{path}{i}.") for i, item in enumerate(node.value)]
        return sorted(found)


def _child(node: yaml.Node | None, part: str | int) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return key.start_mark.line + 1, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item.start_mark.line + 1, item
    return None
