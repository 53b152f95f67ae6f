"""Write ``mikro/sync/_typed.pyi``: the blocking twins' signatures spelled out for type checkers.

:class:`~mikro.sync.SyncMikro` gets its methods at import time, by introspection of :class:`mikro.Mikro`
(``_mirror.py``), so a type checker sees none of them. This module writes the same signatures as source
(``python -m mikro.sync._stubgen``), from the very ``sync_signature`` the runtime twins carry; a test fails
when the written file and the introspection disagree, so the two cannot drift.

Every name an annotation uses is imported from where it is defined: a class from its ``__module__``, a
type alias from the module whose top level assigns it (found by following the defining modules' imports,
``if TYPE_CHECKING:`` blocks included), a module alias (``dt``, ``xr``) as the module.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mikro.sync._mirror import public_methods, public_properties, sync_signature

__all__ = ["TARGET", "formatted", "render"]

#: The generated module, next to this one.
TARGET = Path(__file__).with_name("_typed.pyi")

_HEADER = '''\
"""Signatures of SyncMikro's blocking methods, for type checkers only. Generated: do not edit.

Written by ``python -m mikro.sync._stubgen`` from the same introspection of ``mikro.Mikro`` that builds the
methods at run time; ``tests/sync/test_typed_twins.py`` fails when the two disagree.
"""

from __future__ import annotations

'''

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_LITERALS = frozenset({"None", "True", "False"})
_BUILTINS = frozenset(dir(builtins))
#: The sync spellings ``_mirror`` gives async return types: not bound in the async method's module.
_RESPELLED = {
    "Iterator": "collections.abc",
    "Iterable": "collections.abc",
    "Generator": "collections.abc",
    "AbstractContextManager": "contextlib",
    "ContextManager": "typing",
}


@dataclass
class _Imports:
    modules: dict[str, str] = field(default_factory=dict)  # alias -> module
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> {bound name: source name}

    def lines(self) -> list[str]:
        out = []
        for alias, module in sorted(self.modules.items()):
            out.append(f"import {module}" if alias == module.split(".")[0] else f"import {module} as {alias}")
        for module in sorted(self.names):
            bound = self.names[module]
            parts = sorted(name if name == src else f"{src} as {name}" for name, src in bound.items())
            out.append(f"from {module} import {', '.join(parts)}")
        return out


@functools.cache
def _top_level_bindings(module: str) -> dict[str, tuple[str, str | None]]:
    """``name -> (module, attribute)`` for imports, ``name -> (module, None)`` for module imports, and
    ``name -> (this module, name)`` for names this module defines, read from its source."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    found: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0],
                    None,
                )
    for node in tree.body:  # definitions: only the module's own top level
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.ClassDef | ast.FunctionDef):
            found[node.name] = (module, node.name)
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = (module, target.id)
    return found


def _defining_module(module: str, name: str, seen: frozenset[str] = frozenset()) -> tuple[str, str | None]:
    if module in seen:
        raise LookupError(f"import cycle while looking for {name!r} from {module}")
    bindings = _top_level_bindings(module)
    if name not in bindings:
        raise LookupError(f"{name!r} is not bound at the top of {module}")
    source, attribute = bindings[name]
    if attribute is None or source == module:
        return source, attribute
    value = getattr(importlib.import_module(source), attribute, None)
    defined_in = getattr(value, "__module__", None)
    if isinstance(value, type) and defined_in and getattr(sys.modules[defined_in], attribute, None) is value:
        return defined_in, attribute  # a class: where it is defined, whatever re-exported it
    if source.startswith("mikro"):
        return _defining_module(source, attribute, seen | {module})
    return source, attribute  # typing, collections.abc, ...


def _homes(func: Any) -> tuple[str, ...]:
    """The modules whose names ``func``'s annotations use: its own, then that of the function it took its
    parameters from (``__wrapped__``, see ``mikro.client._signatures``)."""
    source = inspect.unwrap(func).__module__
    return (func.__module__,) if source == func.__module__ else (func.__module__, source)


def _collect(annotation: str, homes: tuple[str, ...], imports: _Imports) -> None:
    for dotted in _NAME.findall(annotation):
        head = dotted.split(".")[0]
        if head in _LITERALS or head in imports.modules or head in _BUILTINS:
            continue
        if any(head in bound for bound in imports.names.values()):
            continue
        module, attribute = _find(head, homes)
        if attribute is None:
            imports.modules[head] = _module_for_dotted(module, dotted)
        else:
            imports.names.setdefault(module, {})[head] = attribute


def _find(head: str, homes: tuple[str, ...]) -> tuple[str, str | None]:
    for home in homes:
        try:
            return _defining_module(home, head)
        except LookupError:
            continue
    if head not in _RESPELLED:
        raise LookupError(f"{head!r} is not bound at the top of any of {homes}")
    return _RESPELLED[head], head


def _module_for_dotted(module: str, dotted: str) -> str:
    # ``anyio.abc.TaskGroup`` needs ``import anyio.abc``; ``dt.datetime`` needs ``import datetime as dt``.
    parts = dotted.split(".")[1:-1]
    while parts:
        candidate = ".".join([module, *parts])
        try:
            importlib.import_module(candidate)
        except ImportError:
            parts.pop()
            continue
        return candidate
    return module


def _parameters(signature: inspect.Signature) -> str:
    rendered: list[str] = []
    star_done = False
    for parameter in signature.parameters.values():
        text = parameter.name
        if parameter.kind is parameter.VAR_POSITIONAL:
            text, star_done = f"*{text}", True
        elif parameter.kind is parameter.VAR_KEYWORD:
            text = f"**{text}"
        elif parameter.kind is parameter.KEYWORD_ONLY and not star_done:
            rendered.append("*")
            star_done = True
        if parameter.annotation is not parameter.empty:
            text += f": {parameter.annotation}"
        if parameter.default is not parameter.empty:
            text += " = ..."
        rendered.append(text)
    return ", ".join(rendered)


def _annotations(signature: inspect.Signature) -> list[str]:
    texts = [p.annotation for p in signature.parameters.values() if p.annotation is not p.empty]
    texts.append(signature.return_annotation)
    if not all(isinstance(text, str) for text in texts):
        raise TypeError(f"expected string annotations (PEP 563), got {texts!r}")
    return texts


def render() -> str:
    """The text of ``_typed.pyi`` for the current ``mikro.Mikro``."""
    from mikro.client._mikro import Mikro

    imports = _Imports()
    body: list[str] = []
    for name, prop in sorted(public_properties(Mikro).items()):
        assert prop.fget is not None
        annotation = inspect.signature(prop.fget).return_annotation
        _collect(annotation, (prop.fget.__module__,), imports)
        body += ["    @property", f"    def {name}(self) -> {annotation}: ..."]
    for name, func in sorted(public_methods(Mikro).items()):
        signature = sync_signature(func)
        for annotation in _annotations(signature):
            # The respelled sync types (SyncContextManager, SyncStream) live in this package.
            if re.search(r"\bSync(ContextManager|Stream)\b", annotation):
                imports.names.setdefault("mikro.sync._streams", {}).update(
                    {"SyncContextManager": "SyncContextManager", "SyncStream": "SyncStream"}
                )
                annotation = re.sub(r"\bSync(ContextManager|Stream)\b", "", annotation)
            _collect(annotation, _homes(func), imports)
        body.append(f"    def {name}({_parameters(signature)}) -> {signature.return_annotation}: ...")
    lines = [
        *imports.lines(),
        "",
        '__all__ = ["SyncMethods"]',
        "",
        "",
        "class SyncMethods:",
        '    """What ``SyncMikro`` has for each public method and property of ``mikro.Mikro``."""',
        "",
        *body,
    ]
    return _HEADER + "\n".join(lines) + "\n"


def formatted(text: str) -> str:
    """``text`` as ruff leaves it (imports sorted, long signatures wrapped), with the project's settings."""
    import subprocess

    name = str(TARGET.relative_to(TARGET.parents[2]))
    for command in (["check", "--fix-only", "--select", "I", "--quiet"], ["format", "--quiet"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", name, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=TARGET.parents[2],
        ).stdout
    return text


def main() -> None:
    TARGET.write_text(formatted(render()))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
