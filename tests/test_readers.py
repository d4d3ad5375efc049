"""Corpus readers on the simulated fixture files, the split rules, and one test per error kind."""

from __future__ import annotations

import json
import logging
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clinical_ner_zh.datasets_scripts import (
    FEATURES,
    CorpusError,
    breast_cancer,
    ccks2019,
    class_of,
    load_breast_cancer,
    load_ccks2019,
    load_ccks2020,
    read_ccks,
    read_label_studio,
    split_of,
)
from clinical_ner_zh.datasets_scripts.labels import BREAST_CANCER_CLASSES, BREAST_CANCER_CODES
from clinical_ner_zh.datasets_scripts.schema import to_dataset
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records

from .helpers import (
    ccks2020_records,
    simulated_ccks_records,
    write_fixtures,
    write_label_studio_json,
    write_label_studio_min,
)

SECRET = "王秘密患者"  # stands for patient text: it must never appear in a message


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("fixtures"))


def _spans(records):
    return [[(e["start"], e["end"], e["label"], e["text"]) for e in r["entities"]] for r in records]


def test_ccks2019_with_bom_crlf_and_trailing_line(files):
    raw = files["ccks2019_train.jsonl"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw and raw.endswith(b"\r\n")
    result = read_ccks(files["ccks2019_train.jsonl"], strict=True)
    expected = simulated_ccks_records(12, seed=1, prefix="ccks2019_train")
    assert [r["id"] for r in result.records] == [f"ccks2019_train:{n}" for n in range(1, 13)]
    assert [r["text"] for r in result.records] == [r["text"] for r in expected]
    assert _spans(result.records) == _spans(expected)
    assert result.report.problems == [] and result.report.entities == sum(len(r["entities"]) for r in expected)


def test_load_ccks2019_splits_and_features(files):
    dataset = load_ccks2019(files["ccks2019_train.jsonl"], files["ccks2019_test.jsonl"], dev_fraction=0.25, seed=3)
    assert {name: len(split) for name, split in dataset.items()} == {"train": 9, "validation": 3, "test": 4}
    assert dataset["train"].features == FEATURES
    again = load_ccks2019(files["ccks2019_train.jsonl"], dev_fraction=0.25, seed=3)
    assert again["validation"]["id"] == dataset["validation"]["id"]
    assert {*dataset["train"]["id"], *dataset["validation"]["id"]} == {f"ccks2019_train:{n}" for n in range(1, 13)}
    assert dataset.read_report.records == 16
    assert {e["label"] for r in dataset["test"] for e in r["entities"]} <= {
        "Disease",
        "Operation",
        "Drug",
        "ImagingExam",
        "Anatomy",
        "LabTest",
    }


def test_ccks2020_keeps_nested_and_double_labelled_spans(files):
    dataset = load_ccks2020(files["ccks2020_train.jsonl"], strict=True)
    first = dataset["train"][0]
    spans = {(e["start"], e["end"], e["label"]) for e in first["entities"]}
    assert spans == {(e["start"], e["end"], e["label"]) for e in ccks2020_records()[0]["entities"]}
    assert (3, 5, "Anatomy") in spans and (3, 8, "Operation") in spans
    assert (11, 16, "Disease") in spans and (11, 16, "Operation") in spans


@pytest.mark.parametrize("name", ["breast_cancer.json", "breast_cancer_min.json"])
def test_label_studio_exports_take_newest_uncancelled_annotation(files, name):
    result = read_label_studio(files[name], strict=True)
    expected = simulated_breast_cancer_records()
    assert [r["id"] for r in result.records] == [r["id"] for r in expected]
    assert _spans(result.records) == _spans(expected)
    assert max(len(r["text"]) for r in result.records) > 5000
    # regions with two labels give one entity per label
    double = [r for r in result.records if len({(e["start"], e["end"]) for e in r["entities"]}) < len(r["entities"])]
    assert double


def test_label_studio_fixture_has_cancelled_and_several_annotations(files):
    tasks = json.loads(files["breast_cancer.json"].read_text(encoding="utf-8"))
    assert any(a["was_cancelled"] for t in tasks for a in t["annotations"])
    assert any(len(t["annotations"]) > 2 for t in tasks)
    assert any(len(r["value"]["labels"]) > 1 for t in tasks for a in t["annotations"] for r in a["result"])


def test_breast_cancer_split_is_deterministic_and_stable():
    ids = [str(n) for n in range(2000)]
    splits = [split_of(i) for i in ids]
    assert splits == [split_of(i) for i in ids]
    shares = {name: splits.count(name) / len(ids) for name in ("train", "validation", "test")}
    assert shares["train"] == pytest.approx(0.6, abs=0.04) and shares["test"] == pytest.approx(0.2, abs=0.04)
    assert split_of("17", salt="x") in ("train", "validation", "test")


def test_load_breast_cancer(files):
    dataset = load_breast_cancer(files["breast_cancer.json"])
    assert list(dataset) == ["train", "validation", "test"]
    assert sum(len(split) for split in dataset.values()) == 100
    for name, split in dataset.items():
        assert all(split_of(record_id) == name for record_id in split["id"])


def test_entity_classes():
    assert {class_of(code) for code in BREAST_CANCER_CODES} == set(BREAST_CANCER_CLASSES)
    assert class_of("Nodule") == "Symptoms" and class_of("Ki67") == "Tests" and class_of("Time") == "Time"
    assert class_of("Chemotherapy") == "Treatments"
    with pytest.raises(ValueError, match="entity type 'Drug' has no class"):
        class_of("Drug")


def test_corpus_commands_write_parquet_and_card(files, tmp_path, capsys):
    ccks2019.main([str(files["ccks2019_train.jsonl"]), "--output-dir", str(tmp_path / "c"), "--dev-fraction", "0.25"])
    card = (tmp_path / "c" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "path: data/validation.parquet" in card
    assert "| Drug | Drug | 药物 |" in card
    assert (tmp_path / "c" / "data" / "train.parquet").stat().st_size > 0
    breast_cancer.main([str(files["breast_cancer_min.json"]), "--output-dir", str(tmp_path / "b")])
    card = (tmp_path / "b" / "README.md").read_text(encoding="utf-8")
    assert "| Chemotherapy | Chemotherapy | 化疗 |" in card
    assert {p.name for p in (tmp_path / "b" / "data").iterdir()} == {
        "train.parquet",
        "validation.parquet",
        "test.parquet",
    }
    assert "100 records" in capsys.readouterr().out


# ----- one test per error kind ----------------------------------------------------------------------------------------


def _ccks_line(text=SECRET + "右乳结节", entities=None, **extra):
    if entities is None:
        entities = [{"label_type": "疾病和诊断", "start_pos": 5, "end_pos": 9}]
    return json.dumps({"originalText": text, "entities": entities, **extra}, ensure_ascii=False)


CCKS_CASES = {
    "bad_json": ('{"originalText": "' + SECRET + '", ', "bad.jsonl:2: record bad:2: invalid JSON"),
    "missing_text": (json.dumps({"entities": []}), "bad.jsonl:2: record bad:2: missing field 'originalText'"),
    "missing_entity_field": (
        _ccks_line(entities=[{"label_type": "药物", "end_pos": 3}]),
        "record bad:2: entity 0: missing field 'start_pos'",
    ),
    "out_of_range": (
        _ccks_line(entities=[{"label_type": "药物", "start_pos": 5, "end_pos": 99}]),
        "entity 0: offsets out of range (start=5, end=99, text length 9)",
    ),
    "empty_span": (
        _ccks_line(entities=[{"label_type": "药物", "start_pos": 4, "end_pos": 4}]),
        "empty span (start=4, end=4)",
    ),
    "reversed_span": (
        _ccks_line(entities=[{"label_type": "药物", "start_pos": 6, "end_pos": 2}]),
        "reversed span (start=6, end=2)",
    ),
    "unknown_label": (
        _ccks_line(entities=[{"label_type": "症状", "start_pos": 0, "end_pos": 2}]),
        "unknown label '症状' (start=0, end=2): expected one of Anatomy, Disease",
    ),
    "wrong_type": (
        _ccks_line(entities=[{"label_type": "药物", "start_pos": "0", "end_pos": 2}]),
        "offsets must be integers",
    ),
}


@pytest.mark.parametrize("case", sorted(CCKS_CASES))
def test_ccks_errors(case, tmp_path, caplog):
    bad_line, message = CCKS_CASES[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(_ccks_line() + "\n" + bad_line + "\n" + _ccks_line() + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as error:
        read_ccks(path, strict=True)
    assert message in str(error.value) and str(path) in str(error.value)
    assert SECRET not in str(error.value)
    assert isinstance(error.value, ValueError)
    with caplog.at_level(logging.WARNING):
        result = read_ccks(path)
    assert len(result.report.problems) == 1 and message in result.report.problems[0].message
    assert message in caplog.text and SECRET not in caplog.text
    if result.report.problems[0].entity is None:  # a bad record is skipped whole
        assert (result.report.records, result.report.records_skipped, result.report.entities) == (2, 1, 2)
    else:  # a bad entity is dropped from its record
        assert (result.report.records, result.report.entities, result.report.entities_skipped) == (3, 2, 1)


def _task(value, text=SECRET + "右乳外上象限结节", **extra):
    annotation = {"id": 1, "was_cancelled": False, "result": [{"type": "labels", "value": value}]}
    return {"id": 7, "data": {"text": text}, "annotations": [annotation], **extra}


LS_CASES = {
    "missing_field": ({"start": 5, "labels": ["Nodule"]}, "record 7: entity 0: missing field 'value.end'"),
    "text_mismatch": (
        {"start": 5, "end": 13, "text": "别的字", "labels": ["Nodule"]},
        "record 7: entity 0: value.text disagrees with text[5:13]",
    ),
    "unknown_label": ({"start": 5, "end": 13, "labels": ["Tumour"]}, "unknown label 'Tumour' (start=5, end=13)"),
    "out_of_range": ({"start": 5, "end": 50, "labels": ["Nodule"]}, "offsets out of range (start=5, end=50"),
    "reversed_span": ({"start": 9, "end": 5, "labels": ["Nodule"]}, "reversed span (start=9, end=5)"),
}


@pytest.mark.parametrize("case", sorted(LS_CASES))
def test_label_studio_errors(case, tmp_path, caplog):
    value, message = LS_CASES[case]
    good = {"start": 5, "end": 13, "text": (SECRET + "右乳外上象限结节")[5:13], "labels": ["结节"]}
    task = _task(value)
    task["annotations"][0]["result"].insert(0, {"type": "labels", "value": good})
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CorpusError, match=r"export\.json") as error:
        read_label_studio(path, strict=True)
    assert message.replace("entity 0", "entity 1") in str(error.value) and SECRET not in str(error.value)
    with caplog.at_level(logging.WARNING):
        result = read_label_studio(path)
    assert [(e["start"], e["end"], e["label"]) for e in result.records[0]["entities"]] == [(5, 13, "Nodule")]
    assert result.report.entities_skipped == 1 and SECRET not in caplog.text


def test_label_studio_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "export.json"
    path.write_text('[\n  {"id": 1, "data": {"text": "' + SECRET + '"}\n  oops\n]', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"export\.json:3: invalid JSON") as error:
        read_label_studio(path)  # raises even when not strict: nothing in the file can be read
    assert SECRET not in str(error.value)


def test_label_studio_all_annotations_cancelled(tmp_path):
    task = _task({"start": 5, "end": 13, "labels": ["Nodule"]})
    task["annotations"][0]["was_cancelled"] = True
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task], ensure_ascii=False), encoding="utf-8")
    result = read_label_studio(path, strict=True)  # a task the annotator skipped is no defect of the file
    assert result.records == [] and result.report.problems == []
    assert (result.report.records_skipped, result.report.records_unannotated) == (0, 1)


def _min_row(task_id, annotation_id, text=SECRET + "右乳外上象限结节", regions=None, stamp="2024-05-01T10:00:00Z"):
    """A JSON-MIN row as Label Studio 1.23's converter writes it; annotation_id None: a task not annotated yet."""
    row = {"text": text, "id": task_id}
    if annotation_id is not None:
        row["label"] = (
            regions if regions is not None else [{"start": 5, "end": 13, "text": text[5:13], "labels": ["Nodule"]}]
        )
    return row | {
        "annotator": 1 if annotation_id is not None else None,
        "annotation_id": annotation_id,
        "created_at": stamp if annotation_id is not None else None,
        "updated_at": stamp if annotation_id is not None else None,
        "lead_time": 3.0 if annotation_id is not None else None,
    }


def test_label_studio_tasks_not_annotated_are_left_out_and_counted_apart(tmp_path):
    from clinical_ner_zh.training.common import ConfigurationError, check_dropped_records

    annotated = _task({"start": 5, "end": 13, "text": (SECRET + "右乳外上象限结节")[5:13], "labels": ["Nodule"]})
    waiting = {"id": 8, "data": {"text": SECRET}, "annotations": [], "predictions": []}
    exports = {
        "export.json": [annotated, waiting],
        "export_min.json": [_min_row(7, 11), _min_row(8, None)],  # download_all_tasks=true
    }
    for name, tasks in exports.items():
        path = tmp_path / name
        path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
        result = read_label_studio(path, strict=True)
        assert [(r["id"], len(r["entities"])) for r in result.records] == [("7", 1)], name
        assert (result.report.records_skipped, result.report.records_unannotated, result.report.problems) == (0, 1, [])
        assert "left out 1 tasks not annotated" in result.report.summary()
        check_dropped_records(result.report, name, 0.05)  # half the tasks waiting is no reason to stop
    path = tmp_path / "none_annotated.json"
    path.write_text(json.dumps([_min_row(8, None), _min_row(9, None)]), encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"none_annotated\.json: no usable record \(2 tasks not annotated\)$"):
        check_dropped_records(read_label_studio(path).report, str(path), 0.05)


def test_label_studio_one_id_on_different_texts_is_reported_not_merged(tmp_path, caplog):
    other = SECRET + "ER(+)，PR(-)。"
    region = {"start": 0, "end": 5, "text": other[:5], "labels": ["ER"]}
    rows = [_min_row(1, 11), _min_row(1, 12, other, [region], "2024-06-01T10:00:00Z"), _min_row(2, 13)]
    tasks = [_task({"start": 5, "end": 13, "labels": ["Nodule"]}, id=1), _task(region, text=other, id=1)]
    tasks.append(_task({"start": 5, "end": 13, "labels": ["Nodule"]}, id=2))
    for name, content in {"export_min.json": rows, "export.json": tasks}.items():
        path = tmp_path / name
        path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
        with caplog.at_level(logging.WARNING):
            result = read_label_studio(path)
        assert [r["id"] for r in result.records] == ["2"], name
        assert result.report.records_skipped == 2 and result.report.problem_counts() == {"duplicate_id": 2}
        assert "record 1: task 2 of 2 with this id and different texts: left out" in result.report.problems[1].message
        assert SECRET not in caplog.text
        with pytest.raises(CorpusError, match="record 1: task 1 of 2 with this id and different texts"):
            read_label_studio(path, strict=True)


def test_span_schema_entity_text_must_match_its_offsets(tmp_path, caplog):
    from clinical_ner_zh.datasets_scripts.spans import read_span_jsonl

    text = SECRET + "𠮷某，口服来曲唑。"  # 𠮷 is one character but two UTF-16 code units
    start = text.index("来曲唑")
    entities = [
        {"start": start + 1, "end": start + 4, "label": "Drug", "text": "来曲唑"},  # offsets counted in UTF-16 units
        {"start": start, "end": start + 3, "label": "Drug", "text": "来曲唑"},
        {"start": 0, "end": 5, "label": "Name"},  # "text" may be left out
    ]
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"id": "r1", "text": text, "entities": entities}, ensure_ascii=False), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        result = read_span_jsonl(path)
    assert [(e["start"], e["end"], e["label"]) for e in result.records[0]["entities"]] == [
        (0, 5, "Name"),
        (start, start + 3, "Drug"),
    ]
    assert result.report.entities_skipped == 1 and result.report.problem_counts() == {"text_mismatch": 1}
    message = f"spans.jsonl:1: record r1: entity 0: entity text disagrees with text[{start + 1}:{start + 4}]"
    assert result.report.problems[0].message.endswith(message)
    assert SECRET not in caplog.text and "来曲唑" not in caplog.text


def test_entities_dropped_by_a_reader_count_toward_max_bad_fraction(tmp_path, caplog):
    from clinical_ner_zh.training.common import ConfigurationError, check_dropped_records

    text = SECRET + "行右乳腺癌改良根治术，ER(+)，Ki67(30%)。"
    surgery = (text.index("右乳"), text.index("术") + 1)
    er, ki67 = (text.index("ER"), text.index("ER") + 5), (text.index("Ki67"), text.index("Ki67") + 9)

    def export(name, labels):
        tasks = []
        for n in range(20):
            regions = [{"start": s, "end": e, "text": text[s:e], "labels": [label]} for (s, e), label in labels(n)]
            tasks.append(_task(regions[0], text=text, id=n))
            tasks[-1]["annotations"][0]["result"] = [{"type": "labels", "value": region} for region in regions]
        path = tmp_path / name
        path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
        return read_label_studio(path).report

    # Full-width letters, digits and hyphens from a Chinese input method name the known types.
    report = export("full_width.json", lambda n: [(er, "ＥＲ"), (ki67, "Ki－67")])
    assert (report.entities, report.entities_skipped) == (40, 0)
    # One type of the project named otherwise than the table ("手术" for 手术名称): a third of the entities lost.
    report = export("one_unknown.json", lambda n: [(surgery, "手术"), (er, "ER"), (ki67, "Ki67")])
    assert (report.records, report.records_skipped, report.entities_skipped) == (20, 0, 20)
    with pytest.raises(ConfigurationError) as error:
        check_dropped_records(report, "one_unknown.json", 0.05)
    assert str(error.value) == (
        "one_unknown.json: 20 of 60 entities dropped (unknown_label 20), more than --max_bad_fraction 0.05: fix the "
        "file (the log names each entity) or raise --max_bad_fraction"
    )
    # Under the share, the run goes on and the log says how many.
    report = export("one_bad.json", lambda n: [(er, "ER"), (ki67, "Ki67"), *([(surgery, "手术")] if n == 0 else [])])
    with caplog.at_level(logging.WARNING):
        check_dropped_records(report, "one_bad.json", 0.05)
    assert "one_bad.json: 1 of 41 entities dropped (unknown_label 1)" in caplog.text and SECRET not in caplog.text


def test_ccks_files_joined_with_cat_keep_every_record(files, tmp_path):
    part = files["ccks2019_train.jsonl"].read_bytes()  # starts with a BOM, ends with CRLF
    joined = tmp_path / "joined.jsonl"
    joined.write_bytes(part + part)
    result = read_ccks(joined, strict=True)
    assert (result.report.records, result.report.records_skipped) == (24, 0)
    assert [r["text"] for r in result.records[12:]] == [r["text"] for r in result.records[:12]]


def test_label_studio_region_text_with_whitespace_collapsed_keeps_its_entity(tmp_path):
    text = SECRET + "术后行TC方案化疗  6周期，\n\n后予来曲唑内分泌治疗。"
    chemo = (text.index("TC"), text.index("6周期") + 3)
    endocrine = (text.index("，") + 1, text.index("治疗") + 2)  # starts on the line breaks
    regions = [
        # value.text as Label Studio's browser selection writes it: runs of whitespace collapsed or gone
        {"start": chemo[0], "end": chemo[1], "text": "TC方案化疗 6周期", "labels": ["Chemotherapy"]},
        {"start": endocrine[0], "end": endocrine[1], "text": "后予来曲唑内分泌治疗", "labels": ["EndocrineTherapy"]},
        {"start": chemo[0] + 1, "end": chemo[1] + 1, "text": "TC方案化疗 6周期", "labels": ["Chemotherapy"]},  # shifted
    ]
    task = _task(regions[0], text=text)
    task["annotations"][0]["result"] = [{"type": "labels", "value": region} for region in regions]
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task], ensure_ascii=False), encoding="utf-8")
    result = read_label_studio(path)
    assert [(e["start"], e["end"], e["label"]) for e in result.records[0]["entities"]] == [
        (*chemo, "Chemotherapy"),
        (*endocrine, "EndocrineTherapy"),
    ]
    assert [p.message.split(": ", 1)[1] for p in result.report.problems] == [
        f"record 7: entity 2: value.text disagrees with text[{chemo[0] + 1}:{chemo[1] + 1}]"
    ]


@pytest.mark.parametrize("kind", ["ccks", "label_studio_json", "label_studio_min"])
def test_a_lone_surrogate_drops_its_record_named_by_line_and_id(files, tmp_path, kind, caplog):
    """A text holding a lone surrogate escape (JSON's "\\ud800", as a UTF-16 tool writes half an emoji) cannot be
    stored: it used to pass the reader, and the whole corpus then failed in pyarrow with a traceback naming no
    record. It is a bad record, named by line and id, without its text; the corpus still loads."""
    if kind == "ccks":
        lines = files["ccks2019_train.jsonl"].read_bytes().splitlines()
        record = json.loads(lines[2].removeprefix(b"\xef\xbb\xbf"))
        record["originalText"] = SECRET + "\ud800" + record["originalText"]
        path = tmp_path / "train.jsonl"
        path.write_bytes(b"\n".join([*lines[:2], json.dumps(record).encode(), *lines[3:]]))
        result = read_ccks(path)
        where, good = f"{path}:3: record train:3", 11
    else:
        records = simulated_breast_cancer_records(6, seed=4, long_records=0)
        marker = "〓"  # written as the escape JSON gives a lone surrogate, which no encoder writes
        records[1] = {**records[1], "text": SECRET + marker + records[1]["text"][len(SECRET) + 1 :]}
        write = write_label_studio_json if kind == "label_studio_json" else write_label_studio_min
        path = write(tmp_path / "export.json", records)
        path.write_text(path.read_text(encoding="utf-8").replace(marker, "\\ud800"), encoding="utf-8")
        result = read_label_studio(path)
        where, good = f"{path}: record {records[1]['id']}", 5
    (problem,) = [p for p in result.report.problems if p.kind == "bad_encoding"]
    assert problem.message.endswith(f"{where}: the text holds a lone surrogate at character {len(SECRET)}")
    assert len(result.records) == good and result.report.records_skipped >= 1
    assert len(to_dataset(result.records)) == good
    assert SECRET not in caplog.text
