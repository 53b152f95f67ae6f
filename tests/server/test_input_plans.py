"""``createRepresentations`` and ``createFiles`` inputs are converted by a plan made once per type
(mikro/server/_input_plans.py):
it must build exactly what strawberry's own conversion builds, nested inputs, defaults and nulls
included."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from graphql import GraphQLList, GraphQLNonNull, coerce_input_value
from strawberry.types.arguments import InputContext, convert_argument

from mikro.server._input_plans import convert_by_plan
from mikro.server._inputs import FileInput, RepresentationInput
from mikro.server._schema import build_schema
from tests.server._helpers import png_bytes

FULL: dict[str, Any] = {
    "store": "12",
    "name": "every field",
    "variety": "MASK",
    "sample": "3",
    "experiments": ["4", "5"],
    "dataset": "6",
    "tags": ["a", "b"],
    "origins": ["7"],
    "channels": [{"name": "DAPI", "emissionWavelength": 461.0, "color": "#0000ff"}, {}],
    "physicalSize": {"x": 0.5, "y": 0.5, "z": None},
    "acquisitionDate": "2024-05-06T07:08:09+00:00",
    "thumbnail": {"png": base64.b64encode(png_bytes(4, 3)).decode("ascii")},
    "arrayMetadata": '{"zarr_format": 3}',
    "sourceFingerprint": "ab" * 32,
    "sourceScene": 2,
    "sourceSceneName": "scene 2",
    "sourceSceneCount": 3,
    "acquisition": {
        "instrument": {"manufacturer": "Zeiss", "model": None},
        "objective": {"lensNA": 1.4, "nominalMagnification": 63},
        "stagePosition": None,
        "timeIncrement": 0.25,
    },
    "originalFile": "8",
    "levels": [{"path": "1", "arrayMetadata": "{}", "scale": [1, 2, 2]}],
}
FILE: dict[str, Any] = {
    "store": "9",
    "name": "protocol.pdf",
    "size": 2**40,
    "contentHash": "blake3:" + "cd" * 32,
    "mediaType": "application/pdf",
    "representations": ["1", "2"],
    "samples": ["3"],
    "experiments": [],
    "datasets": ["4"],
    "tags": ["original"],
}
FILE_REQUIRED = {"store": "9", "name": "x", "size": 0, "contentHash": "blake3:" + "00" * 32}
INPUTS: dict[str, tuple[type, list[dict[str, Any]]]] = {
    "every field": (RepresentationInput, [FULL]),
    "only required": (RepresentationInput, [{"store": "1", "name": "x"}]),
    "nulls": (
        RepresentationInput,
        [{"store": "1", "name": "x", "levels": None, "thumbnail": None, "acquisition": None}],
    ),
    "a batch": (RepresentationInput, [FULL, {"store": "2", "name": "y", "channels": []}]),
    "a file, every field": (FileInput, [FILE]),
    "files, defaults": (FileInput, [FILE_REQUIRED, FILE]),
}


@pytest.mark.parametrize("case", list(INPUTS))
def test_the_plan_builds_what_strawberry_builds(case: str) -> None:
    type_, values = INPUTS[case]
    schema = build_schema()
    named = schema._schema.get_type(type_.__name__)
    input_type = GraphQLNonNull(GraphQLList(GraphQLNonNull(named)))  # type: ignore[arg-type]
    coerced = coerce_input_value(values, input_type)
    registry, config = schema.schema_converter.scalar_registry, schema.config
    context = InputContext(info=None, config=config, scalar_registry=registry, path=("inputs",))
    planned = [convert_by_plan(type_, value, context) for value in coerced]

    definition = type_.__strawberry_definition__  # type: ignore[attr-defined]
    assert definition.from_input is convert_by_plan  # the server converts this type by its plan
    definition.from_input = None
    try:
        expected = [convert_argument(value, type_, registry, config) for value in coerced]
    finally:
        definition.from_input = convert_by_plan
    assert planned == expected
    # Nothing shared with graphql-core's coerced values (its default lists are shared across requests).
    assert planned[0].tags is not coerced[0]["tags"] or not planned[0].tags
