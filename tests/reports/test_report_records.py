"""The report's records against its JSON schema, and their JSON round trip."""

from __future__ import annotations

import copy
import json
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from seaformer_deploy.bench.stats import Summary
from seaformer_deploy.errors import UserError
from seaformer_deploy.export.records import Metrics
from seaformer_deploy.reports import files
from seaformer_deploy.reports import records as rec
from seaformer_deploy.reports.show import render

DATA = Path(__file__).with_name("data") / "report.json"
SCHEMA = files.schema()
DEFS, TOP = SCHEMA["$defs"], SCHEMA["properties"]
DEVICE, EXPORT = TOP["device"]["properties"], TOP["export"]["properties"]

# Each record and the schema object it is written as.
SCHEMA_OF = {
    rec.Report: SCHEMA, rec.Device: TOP["device"], rec.Core: DEVICE["core"],
    rec.Fingerprint: DEVICE["fingerprint"], rec.ExportInfo: TOP["export"],
    rec.Model: EXPORT["model"], rec.Input: EXPORT["input"], rec.Output: EXPORT["output"],
    rec.Sample: EXPORT["samples"]["items"], rec.Measured: DEFS["artifact"],
    Summary: DEFS["stats"], rec.Parity: DEFS["parity"], Metrics: DEFS["metrics"],
    rec.Failure: TOP["failures"]["items"], rec.Breakdown: DEFS["breakdown"],
    rec.Share: DEFS["breakdown"]["properties"]["components"]["additionalProperties"],
    rec.Paper: TOP["paper"],
}
# Records whose schema constrains only some of the fields (the rest are still written).
PARTIAL = {rec.Paper}


@pytest.mark.parametrize("record", list(SCHEMA_OF), ids=lambda r: r.__name__)
def test_records_are_their_schema(record):
    """The schema requires exactly the fields without a default (a field with one may be
    absent from an older report), and names every field; a field added on one side fails."""
    node = SCHEMA_OF[record]
    names = {f.name for f in fields(record)}
    required = {f.name for f in fields(record)
                if f.default is MISSING and f.default_factory is MISSING}
    assert set(node["required"]) == required
    if record in PARTIAL:
        assert set(node["properties"]) <= names, set(node["properties"]) - names
    else:
        assert set(node["properties"]) == names, set(node["properties"]) ^ names


def test_a_report_reads_back_to_the_same_json():
    doc = json.loads(DATA.read_text())
    assert rec.Report.from_dict(doc).to_dict() == doc
    assert files.read_report(DATA).artifacts[0].stats.median == doc["artifacts"][0]["stats"][
        "median"]


def test_a_report_without_the_newer_fields_still_reads():
    """Fields added since version 1 of the schema have defaults: an older report reads."""
    doc = json.loads(DATA.read_text())
    del doc["failures"], doc["device"]["profile"], doc["noise"], doc["metric"]
    for art in doc["artifacts"]:
        del art["counts"]
        for name in ("precision", "target", "trend", "why", "slow_mode", "wander"):
            del art["stats"][name]
    report = rec.Report.from_dict(doc)
    assert report.failures == [] and report.device.profile is None
    assert report.metric == "latency" and report.noise is None
    assert report.artifacts[0].stats.precision is None and report.artifacts[0].counts is None


def test_a_value_the_record_cannot_hold_is_a_report_error():
    doc = copy.deepcopy(json.loads(DATA.read_text()))
    doc["device"]["core"]["index"] = "cpu1"        # what the schema would refuse, unchecked
    with pytest.raises(files.ReportError, match=r"does not hold what bench writes.*core"):
        files.typed_report(doc, "r.json")
    with pytest.raises(UserError):
        render(doc, None)
