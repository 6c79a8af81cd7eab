"""Reading a report back: strict, with one error that names the file, the field and what to do.

data/report.json is a real bench report (the committed SeaFormer-T baseline's run), trimmed to
three artifacts of 30 iterations with its statistics recomputed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from seaformer_deploy.reports import load_report, write_report
from seaformer_deploy.errors import UserError
from seaformer_deploy.reports.files import validate

DATA = Path(__file__).resolve().parent / "data" / "report.json"


@pytest.fixture
def report() -> dict:
    return json.loads(DATA.read_text())


def save(tmp_path: Path, content: dict | str) -> Path:
    (tmp_path / "report.json").write_text(content if isinstance(content, str)
                                          else json.dumps(content))
    return tmp_path


def refused(path: Path) -> str:
    with pytest.raises(UserError) as caught:
        load_report(path)
    return str(caught.value)


def test_the_trimmed_real_report_is_valid(report):
    validate(report)
    assert [a["path"] for a in report["artifacts"]] == ["model.fp32.pte", "head.fp32.pte",
                                                        "model.fp32.onnx"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_numbers_json_cannot_hold_are_refused_where_they_are(tmp_path, report, token):
    """#3: Python's json writes and reads NaN and Infinity; the schema let them through."""
    report["artifacts"][2]["samples_ms"][5] = 424242.5
    text = json.dumps(report).replace("424242.5", token)
    message = refused(save(tmp_path, text))
    assert message.startswith(f"{tmp_path / 'report.json'}: artifacts[2].samples_ms[5] "
                              f"(model.fp32.onnx) is ")
    assert "not a finite number: a latency is a finite number of milliseconds above 0" in message
    assert "re-run the benchmark" in message


@pytest.mark.parametrize("value", [0, -1.5])
def test_latencies_must_be_above_zero(tmp_path, report, value):
    report["artifacts"][0]["samples_ms"][0] = value
    message = refused(save(tmp_path, report))
    assert "at artifacts[0].samples_ms[0] (model.fp32.pte)" in message
    assert "a latency is a finite number of milliseconds above 0" in message


@pytest.mark.parametrize("field", ["wall_seconds", "stats", "protocol"])
def test_nan_anywhere_else_is_refused_too(tmp_path, report, field):
    if field == "stats":
        report["artifacts"][1]["stats"]["cv"] = math.nan
        where = "artifacts[1].stats.cv (head.fp32.pte) is NaN"
    elif field == "protocol":
        report["protocol"]["cv_limit"] = math.inf
        where = "protocol.cv_limit is Infinity"
    else:
        report["wall_seconds"] = math.nan
        where = "wall_seconds is NaN"
    assert where in refused(save(tmp_path, report))


def test_an_infinite_parity_metric_is_what_the_bench_records_for_non_finite_outputs(
        tmp_path, report):
    """export/parity.py gives outputs that are not finite an infinite error and -inf PSNR."""
    worst = report["artifacts"][0]["parity"]["worst"]
    worst.update(max_abs_err=math.inf, psnr_db=-math.inf)
    assert load_report(save(tmp_path, report))["artifacts"][0]["parity"]["worst"][
        "psnr_db"] == -math.inf
    worst["cosine"] = math.nan                     # NaN is never written: damage
    assert "parity.worst.cosine (model.fp32.pte) is NaN" in refused(save(tmp_path, report))


def test_a_report_from_a_newer_version_says_so(tmp_path, report):
    report["schema_version"] = 7
    report["tools"]["seaformer-deploy"] = "0.9.0"
    message = refused(save(tmp_path, report))
    assert "is a version-7 report; this seaformer-deploy reads version 1: read it with the " \
           "seaformer-deploy that wrote it (0.9.0), or update this one." in message


def test_other_documents_of_the_project_are_named(tmp_path):
    message = refused(save(tmp_path, {"schema": "seaformer-deploy/export-manifest"}))
    assert "is not a seaformer-deploy bench report: it is an export manifest" in message


def test_names_that_become_paths_must_stay_inside_the_baselines_folder(tmp_path, report):
    report["export"]["model"]["name"] = "../../etc/x"
    assert "at export.model.name: '../../etc/x' does not match" in refused(
        save(tmp_path, report))


def test_a_missing_path_keeps_the_old_wording(tmp_path):
    assert "is not a readable report: no such file or folder" in refused(tmp_path / "x")
    assert "is not a readable report: the folder has no report.json" in refused(tmp_path)


def test_write_report_refuses_what_could_not_be_read_back(tmp_path, report):
    report["artifacts"][0]["stats"]["median"] = math.nan
    with pytest.raises(UserError, match="stats.median"):
        write_report(report, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()
