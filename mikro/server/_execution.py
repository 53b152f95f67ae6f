"""GraphQL execution that remembers how each document's selection sets resolve, across requests.

graphql-core collects the fields of every object it completes (expanding fragments, merging
duplicates) and memoizes that only within one request. Clients send the same few documents again and
again, and ``ParserCache`` hands every request the same parsed document, so the collected fields of a
(type, field nodes) pair are the same in every request: for ``representation(id)`` with its fragments,
recollecting them was a fifth of the server's CPU per request. Field collection depends on the
request's variables only through directives (``@skip``/``@include``/``@defer``) and fragment
arguments; documents that have any are collected per request as before.
"""

from __future__ import annotations

from typing import Any

from graphql import DirectiveNode, GraphQLObjectType, OperationDefinitionNode, Visitor, visit
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList
from graphql.language.visitor import BREAK
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

__all__ = ["CachingExecutionContext"]

#: Entries kept before the caches start afresh (a few hundred documents' selection sets).
_MAX_ENTRIES = 4096

# Values hold the keyed objects themselves, so that the ids in the keys cannot be reused while cached.
_collected: dict[tuple[GraphQLObjectType, tuple[int, ...]], tuple[FieldDetailsList, CollectedFields]] = {}
_static: dict[int, tuple[OperationDefinitionNode, bool]] = {}


class _FindDirective(Visitor):
    found = False

    def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
        self.found = True
        return BREAK


def _has_directives(nodes: list[Any]) -> bool:
    for node in nodes:
        finder = _FindDirective()
        visit(node, finder)
        if finder.found:
            return True
    return False


class CachingExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def _is_static(self) -> bool:
        """Whether field collection in this operation ignores the variables (no directives)."""
        operation = self.operation
        entry = _static.get(id(operation))
        if entry is None or entry[0] is not operation:
            if len(_static) >= _MAX_ENTRIES:
                _static.clear()
            fragments = [details.definition for details in self.fragments.values()]
            static = not any(details.variable_signatures for details in self.fragments.values())
            entry = (operation, static and not _has_directives([operation, *fragments]))
            _static[id(operation)] = entry
        return entry[1]

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        if not self._is_static():
            return super().collect_subfields(return_type, field_details_list)
        key = (return_type, tuple(id(details.node) for details in field_details_list))
        cached = _collected.get(key)
        if cached is not None:
            return cached[1]
        collected = super().collect_subfields(return_type, field_details_list)
        if len(_collected) >= _MAX_ENTRIES:
            _collected.clear()
        _collected[key] = (field_details_list, collected)
        return collected
