"""The OME-XML fields an image keeps, read by `_ome_xml` (ElementTree), are what ome-types' own model of
the same document gives: documents written by ome-types and by tifffile, and one by hand with the
schema's defaults left out and a stage label in place of plane positions."""

from __future__ import annotations

from pathlib import Path

import ome_types
import pytest
import tifffile

from mikro.ingest._metadata import from_ome
from mikro.ingest._ome_xml import parse_ome
from tests.ingest import _files

BY_HAND = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0">
    <Microscope Manufacturer="Zeiss" Type="Inverted"/>
    <Objective ID="Objective:0" LensNA="1.4" NominalMagnification="63" Immersion="Oil"/>
    <Objective ID="Objective:1" LensNA="0.3" NominalMagnification="10"/>
  </Instrument>
  <Image ID="Image:0" Name="well A1">
    <AcquisitionDate>2023-01-02T03:04:05.250Z</AcquisitionDate>
    <InstrumentRef ID="Instrument:0"/>
    <ObjectiveSettings ID="Objective:1"/>
    <StageLabel Name="A1" X="1.5" XUnit="mm" Y="2"/>
    <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="4" SizeY="4" SizeC="2" SizeZ="1"
        SizeT="3" PhysicalSizeX="650" PhysicalSizeXUnit="nm" PhysicalSizeY="0.65" TimeIncrement="1.5"
        TimeIncrementUnit="min">
      <Channel ID="Channel:0:0" Name="DAPI" ExcitationWavelength="405" EmissionWavelength="0.45"
          EmissionWavelengthUnit="µm"/>
      <Channel ID="Channel:0:1"/>
      <TiffData/>
    </Pixels>
  </Image>
</OME>
"""


def _documents(tmp_path: Path) -> list[str]:
    written = tmp_path / "cells.ome.tif"
    _files.ome_tiff(written)
    plain = tmp_path / "plain.ome.tif"
    meta = {"axes": "CYX", "Channel": {"Name": ["a", "b"]}, "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.2}
    tifffile.imwrite(plain, _files.values((2, 8, 8)), ome=True, metadata=meta)
    docs = []
    for path in (written, plain):
        with tifffile.TiffFile(path) as tif:
            docs.append(str(tif.ome_metadata))
    return [*docs, BY_HAND]


def test_the_fields_kept_are_ome_types_own(tmp_path: Path) -> None:
    for xml in _documents(tmp_path):
        ours, theirs = parse_ome(xml), ome_types.from_xml(xml)
        assert [i.id for i in ours.images] == [i.id for i in theirs.images]
        for index in range(len(theirs.images)):
            assert from_ome(ours, index) == from_ome(theirs, index)


def test_the_hand_written_document_reads_as_written() -> None:
    meta = from_ome(parse_ome(BY_HAND), 0)
    assert meta.pixel_size == {"x": 0.65, "y": 0.65, "t": 90.0}
    assert (meta.channel_names, meta.excitation, meta.emission) == (
        ["DAPI", None],
        [405.0, None],
        [450.0, None],
    )
    assert meta.acquisition is not None and meta.acquisition.objective is not None
    assert meta.acquisition.objective.nominal_magnification == 10.0
    assert meta.acquisition.stage_position is not None
    assert meta.acquisition.stage_position.x == 1500.0
    # No unit given: the stage's reference frame, no physical length.
    assert meta.acquisition.stage_position.y is None


def test_what_is_no_ome_document_is_refused() -> None:
    for xml in ("<html/>", "<OME"):
        with pytest.raises(ValueError):
            parse_ome(xml)
