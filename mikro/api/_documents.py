"""The operation documents in ``mikro/api/documents/*.graphql``, each with the fragments it uses.

The ``.graphql`` files are the source: every operation there is validated against
``mikro/schema.graphql`` by the contract test. Here they are only split into definitions and
composed, so that a request carries exactly one operation plus its fragments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["Operation", "all_operations", "operation"]

_DEFINITION = re.compile(r"^(query|mutation|subscription|fragment)\s+(\w+)", re.MULTILINE)
_SPREAD = re.compile(r"\.\.\.\s*(\w+)")


@dataclass(frozen=True)
class Operation:
    name: str
    kind: str
    document: str

    @property
    def is_mutation(self) -> bool:
        return self.kind == "mutation"


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


@cache
def _definitions() -> dict[str, tuple[str, str]]:
    """name -> (kind, text) of every definition in the documents folder."""
    found: dict[str, tuple[str, str]] = {}
    folder = resources.files("mikro.api") / "documents"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".graphql"):
            continue
        text = _strip_comments(entry.read_text(encoding="utf-8"))
        starts = list(_DEFINITION.finditer(text))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            name = match.group(2)
            if name in found:
                raise RuntimeError(f"{name} is defined twice in mikro/api/documents")
            found[name] = (match.group(1), text[match.start() : end].strip())
    return found


def _fragments_of(text: str, definitions: dict[str, tuple[str, str]], seen: set[str]) -> list[str]:
    out: list[str] = []
    for name in _SPREAD.findall(text):
        if name in seen:
            continue
        seen.add(name)
        kind, body = definitions[name]
        if kind != "fragment":
            raise RuntimeError(f"...{name} spreads a {kind}, not a fragment")
        out.append(body)
        out.extend(_fragments_of(body, definitions, seen))
    return out


@cache
def operation(name: str) -> Operation:
    """The operation ``name`` (e.g. ``"GetRepresentation"``) as a complete document."""
    definitions = _definitions()
    kind, body = definitions[name]
    if kind == "fragment":
        raise KeyError(f"{name} is a fragment, not an operation")
    parts = [body, *_fragments_of(body, definitions, set())]
    return Operation(name=name, kind=kind, document="\n\n".join(parts) + "\n")


def all_operations() -> list[Operation]:
    return [operation(name) for name, (kind, _) in _definitions().items() if kind != "fragment"]
