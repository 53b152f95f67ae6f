"""The blocking twins are typed: ``mikro/sync/_typed.pyi`` declares each one, as the runtime builds it.

``SyncMikro``'s methods are made at import time, so type checkers read their generated signatures; these
tests fail when someone changes ``mikro.Mikro`` without running ``python -m mikro.sync._stubgen``.
(``tests/typing/sync_facade.py`` checks, under mypy, that the declared types are what a user gets.)
"""

from __future__ import annotations

import ast
import inspect

from mikro.client._mikro import Mikro
from mikro.sync import SyncMikro
from mikro.sync._mirror import public_methods, public_properties
from mikro.sync._stubgen import TARGET, render


def declared() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(TARGET.read_text())
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "SyncMethods"]
    return {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}


def normalized(source: str) -> tuple[list[str], list[str]]:
    """The module's statements with layout and import order left out (what ruff may change, by version)."""
    imports: list[str] = []
    rest: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom):
            names = sorted(f"{a.name} as {a.asname}" for a in node.names)
            imports.append(f"from {node.module} import {', '.join(names)}")
        elif isinstance(node, ast.Import):
            imports += sorted(f"import {a.name} as {a.asname}" for a in node.names)
        else:
            rest.append(ast.dump(node))
    return sorted(imports), rest


def test_generated_signatures_are_up_to_date() -> None:
    assert normalized(TARGET.read_text()) == normalized(render()), (
        "mikro/sync/_typed.pyi is out of date: run `python -m mikro.sync._stubgen`"
    )


def test_every_blocking_method_and_property_is_declared_with_its_parameters() -> None:
    stubs = declared()
    runtime = {**public_methods(Mikro), **public_properties(Mikro)}
    assert set(stubs) == set(runtime)
    for name in public_methods(Mikro):
        twin = getattr(SyncMikro, name)
        params = list(inspect.signature(twin).parameters)
        stub = stubs[name].args
        stub_params = [a.arg for a in [*stub.posonlyargs, *stub.args, *stub.kwonlyargs]]
        stub_params += [a.arg for a in (stub.vararg, stub.kwarg) if a is not None]
        assert sorted(params) == sorted(stub_params), name
