"""The manifest's records against its JSON schema, and their JSON round trip."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from seaformer_deploy.export import manifest as mf
from seaformer_deploy.export import records as rec
from seaformer_deploy.export.pipeline import ExportOptions
from seaformer_deploy.export.precision import Precision

SCHEMA = mf.schema()
DEFS, TOP = SCHEMA["$defs"], SCHEMA["properties"]


def _object(node: dict) -> dict:
    """An object schema with its properties and required keys, through allOf and items."""
    node = node.get("items", node)
    if "allOf" in node:
        merged = {"properties": {}, "required": []}
        for part in node["allOf"]:
            part = DEFS[part["$ref"].rsplit("/", 1)[1]] if "$ref" in part else part
            merged["properties"] |= part.get("properties", {})
            merged["required"] += part.get("required", [])
        return merged
    return node


# Each record and the schema object it is written as.
SCHEMA_OF = {
    rec.Manifest: SCHEMA, rec.Artifact: DEFS["artifact"], rec.Tensor: DEFS["tensor"],
    rec.Parity: DEFS["parity"], rec.Metrics: DEFS["metrics"], rec.Chain: DEFS["chain"],
    rec.OrtForm: DEFS["artifact"]["properties"]["ort_forms"], rec.Model: TOP["model"],
    rec.Input: TOP["input"], rec.Output: TOP["output"], rec.Sample: TOP["samples"],
    rec.Component: TOP["components"], rec.TensorFile: TOP["tensors"],
    rec.Int8Plan: TOP["int8"], rec.Int8Step: DEFS["int8_step"], rec.Int8Block: DEFS["int8_block"],
}


# Records whose schema names only the properties it constrains; the rest are still fields.
PARTIAL = {rec.OrtForm}
# Fields always written, possibly as null, that the schema does not require.
NOT_REQUIRED = {(rec.Model, "class_names")}


@pytest.mark.parametrize("record", list(SCHEMA_OF), ids=lambda r: r.__name__)
def test_records_are_their_schema(record):
    """Every field is a schema property and every property a field; the schema requires
    exactly the fields that are always written (not ``optional()``). A field added to one
    side only fails here."""
    node = _object(SCHEMA_OF[record])
    names = {f.name for f in fields(record)}
    written = {f.name for f in fields(record) if not f.metadata.get("optional")
               and (record, f.name) not in NOT_REQUIRED}
    assert set(node["required"]) == written
    if record in PARTIAL:
        assert set(node["properties"]) <= names, set(node["properties"]) - names
    else:
        assert set(node["properties"]) == names, set(node["properties"]) ^ names


def test_manifest_options_are_the_recorded_export_options():
    """The manifest's ``options`` are ExportOptions' fields marked recorded, by name."""
    recorded = set(ExportOptions("seaformer-t").recorded())
    assert set(TOP["options"]["properties"]) == recorded == set(TOP["options"]["required"])


def test_precisions_are_the_schemas():
    enum = DEFS["artifact"]["properties"]["precision"]["enum"]
    assert tuple(enum) == Precision.names() == tuple(
        TOP["options"]["properties"]["precisions"]["items"]["enum"])
    assert Precision.FP16 == "fp16" and f"{Precision.FP16}" == "fp16"   # a string where needed
    assert Precision.FP16.io_dtype(fp32_io=True) == "float32"
    assert Precision.FP16.io_dtype(fp32_io=False) == "float16"


def test_a_written_manifest_reads_back_to_the_same_json(small_export):
    """manifest.json -> Manifest -> JSON is the file's content, key for key."""
    on_disk = json.loads((small_export.folder / mf.MANIFEST).read_text())
    record = mf.read(small_export.folder)
    assert record.to_dict() == on_disk
    assert record == small_export.manifest
    art = record.artifact("model.fp32.pte")
    assert art.parity.passed and art.inputs[0].file.startswith("tensors/")
    with pytest.raises(KeyError):
        record.artifact("model.int4.pte")


def test_optional_fields_are_left_out_when_absent():
    tensor = rec.Tensor(name="x", shape=[1, 3], dtype="float32")
    assert tensor.to_dict() == {"name": "x", "shape": [1, 3], "dtype": "float32"}
    model = rec.Model("m", "f", "v", 2, 10, None)
    assert model.to_dict()["class_names"] is None          # required by readers: kept as null
    assert rec.Tensor.from_dict(tensor.to_dict()) == tensor
