"""Entity-level scores: hand-computed cases, the seqeval cross-check, the evaluate module offline, and the CLI."""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from clinical_ner_zh import metrics
from clinical_ner_zh.cli_errors import run_command
from clinical_ner_zh.metrics import Score, format_report, normalize_span, score_entities
from clinical_ner_zh.metrics.cli import main
from clinical_ner_zh.modeling.tagging import resolve_overlaps, spans_to_tags

# A string that stands for patient text: it must never show up in an error message or a log line
SECRET = "患者左乳肿块3cm"


def counts(score: Score) -> tuple[int, int, int]:
    return score.true_positives, score.predicted, score.support


# --- hand-computed cases ------------------------------------------------------------------------------------------


def test_strict_micro_macro_per_type_by_hand():
    gold = [[(0, 2, "A"), (3, 6, "B"), (10, 12, "A")], [(0, 5, "药物")]]
    predicted = [[(0, 2, "A"), (3, 5, "B"), (10, 12, "B")], [(1, 4, "药物")]]
    report = score_entities(gold, predicted)

    assert list(report.per_type) == ["A", "B", "药物"]  # sorted when no order is given
    assert counts(report.per_type["A"]) == (1, 1, 2)
    assert report.per_type["A"].precision == 1.0
    assert report.per_type["A"].recall == 0.5
    assert report.per_type["A"].f1 == pytest.approx(2 / 3)
    assert counts(report.per_type["B"]) == (0, 2, 1)
    assert counts(report.per_type["药物"]) == (0, 1, 1)
    assert counts(report.micro) == (1, 4, 4)
    assert report.micro.f1 == 0.25
    # macro: mean of per-type ratios, F1 included (not the F1 of the mean P and R)
    assert report.macro.precision == pytest.approx(1 / 3)
    assert report.macro.recall == pytest.approx(1 / 6)
    assert report.macro.f1 == pytest.approx((2 / 3) / 3)
    assert report.num_records == 2


def test_partial_scores_by_hand():
    gold = [[(0, 2, "A"), (3, 6, "B"), (10, 12, "A")], [(0, 5, "药物")]]
    predicted = [[(0, 2, "A"), (3, 5, "B"), (10, 12, "B")], [(1, 4, "药物")]]
    report = score_entities(gold, predicted)
    # type overlap: (0,2,A) exact, (3,5,B)~(3,6,B), (1,4,药物)~(0,5,药物); (10,12,B) overlaps no gold B
    assert counts(report.type_overlap) == (3, 4, 4)
    assert counts(report.type_overlap_per_type["B"]) == (1, 2, 1)
    # exact boundary, any type: (0,2) and (10,12)
    assert counts(report.exact_boundary) == (2, 4, 4)


def test_partial_matching_is_one_to_one_and_maximum():
    # Two predictions inside one gold entity: only one may match it
    report = score_entities([[(0, 10, "A")]], [[(0, 3, "A"), (5, 8, "A")]])
    assert counts(report.type_overlap) == (1, 2, 1)
    # p1 overlaps g1 and g2, p2 only g1: a greedy pass (in position order) giving g1 to p1 finds 1 match, the
    # maximum is 2
    gold = [(0, 4, "A"), (6, 10, "A")]
    predicted = [(0, 8, "A"), (2, 3, "A")]
    for order in (predicted, predicted[::-1]):
        assert counts(score_entities([gold], [order]).type_overlap) == (2, 2, 2)
    # Overlap with another type does not count
    assert score_entities([[(0, 4, "A")]], [[(0, 4, "B")]]).type_overlap.true_positives == 0
    # Touching spans (end == start) do not overlap
    assert score_entities([[(0, 4, "A")]], [[(4, 6, "A")]]).type_overlap.true_positives == 0


def test_exact_boundary_any_type_is_one_to_one():
    # One boundary, two gold labels, three predicted labels: at most two matches
    gold = [[(0, 3, "A"), (0, 3, "B")]]
    predicted = [[(0, 3, "B"), (0, 3, "C"), (0, 3, "D")]]
    report = score_entities(gold, predicted)
    assert counts(report.exact_boundary) == (2, 3, 2)
    assert counts(report.micro) == (1, 3, 2)


def test_nested_gold_entities_are_scored_as_they_are():
    gold = [[(0, 20, "Chemotherapy"), (5, 9, "Time")]]
    predicted = [[(5, 9, "Time")]]
    report = score_entities(gold, predicted)
    assert counts(report.micro) == (1, 1, 2)
    assert report.per_type["Chemotherapy"].recall == 0.0


def test_entity_types_order_and_rows_without_support():
    report = score_entities([[(0, 1, "B")], [(0, 1, "Z")]], [[(0, 1, "B")], []], entity_types=["C", "B"])
    assert list(report.per_type) == ["C", "B", "Z"]  # listed first, then the other types seen, sorted
    assert report.per_type["C"] == Score(0.0, 0.0, 0.0, 0, 0, 0)
    # (1 + 0) / 2: a listed type with neither gold nor predictions has its row but stays out of the mean (seqeval)
    assert report.macro.f1 == pytest.approx(1 / 2)
    assert score_entities([[(0, 1, "B")]], [[(0, 1, "B")]], entity_types=["B", "C"]).macro.f1 == 1.0


@pytest.mark.parametrize(
    "classes",
    [
        {"Nodule": "Symptoms", "TNM": "Tests", "Ki67": "Tests", "Time": "Time"},
        {"Symptoms": ["Nodule"], "Tests": ["TNM", "Ki67"], "Time": ["Time"]},
    ],
    ids=["type->class", "class->types"],
)
def test_per_class_pools_the_counts_of_its_types(classes):
    gold = [[(0, 2, "Nodule"), (3, 5, "TNM"), (6, 8, "Ki67"), (9, 11, "Ki67")]]
    predicted = [[(0, 2, "Nodule"), (3, 5, "TNM"), (6, 8, "TNM")]]
    report = score_entities(gold, predicted, classes=classes)
    # Classes in mapping order, a class whose types never occur included
    assert list(report.per_class) == ["Symptoms", "Tests", "Time"]
    assert counts(report.per_class["Tests"]) == (1, 2, 3)
    assert report.per_class["Tests"].precision == 0.5
    assert report.per_class["Tests"].recall == pytest.approx(1 / 3)
    assert report.per_class["Tests"].f1 == pytest.approx(0.4)
    assert counts(report.per_class["Symptoms"]) == (1, 1, 1)
    assert report.per_class["Time"] == Score(0.0, 0.0, 0.0, 0, 0, 0)
    assert report.unclassified_types == ()


def test_unclassified_types_are_reported_and_a_type_in_two_classes_is_an_error(caplog):
    with caplog.at_level(logging.WARNING, logger="clinical_ner_zh.metrics"):
        report = score_entities([[(0, 1, "X")]], [[(0, 1, "X")]], classes={"Tests": ["TNM"]})
    assert report.unclassified_types == ("X",)
    assert report.micro.f1 == 1.0
    assert "X" in caplog.text
    with pytest.raises(ValueError, match="'TNM' is in two classes"):
        score_entities([], [], classes={"Tests": ["TNM"], "Time": ["TNM"]})


def test_zero_division_gives_zero():
    for gold, predicted in [([], []), ([[]], [[]]), ([[(0, 1, "A")]], [[]]), ([[]], [[(0, 1, "A")]])]:
        report = score_entities(gold, predicted)
        for score in (report.micro, report.macro, report.type_overlap, report.exact_boundary):
            assert (score.precision, score.recall, score.f1) == (0.0, 0.0, 0.0)
    assert score_entities([], []).per_type == {}


def test_duplicates_count_once_and_are_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="clinical_ner_zh.metrics"):
        report = score_entities([[(0, 2, "A"), (0, 2, "A")]], [[(0, 2, "A"), (0, 2, "A")]], record_ids=["r1"])
    assert counts(report.micro) == (1, 1, 1)
    assert "'r1'" in caplog.text


def test_span_forms_are_equivalent():
    as_tuples = score_entities([[(0, 2, "A")]], [[(0, 2, "A")]])
    as_dicts = score_entities(
        [[{"start": 0, "end": 2, "label": "A", "text": SECRET}]],
        [[{"start": 0, "end": 2, "entity_group": "A", "score": 0.9, "word": SECRET}]],
    )
    assert as_tuples == as_dicts
    assert normalize_span([0, 2, "A"]) == (0, 2, "A")


@pytest.mark.parametrize(
    ("span", "message"),
    [
        ({"start": 3, "end": 3, "label": "A", "word": SECRET}, "start=3, end=3"),
        ({"start": -1, "end": 3, "label": "A", "word": SECRET}, "start=-1, end=3"),
        ({"start": 0, "end": 3, "word": SECRET}, "expected keys 'start', 'end' and 'label' or 'entity_group'"),
        ({"start": 0.5, "end": 3, "label": "A", "word": SECRET}, "offsets must be integers"),
        ((0, 2, ""), "non-empty string"),
        (SECRET, "expected (start, end, label) or a dict"),
    ],
)
def test_invalid_spans_name_record_and_offsets_never_text(span, message):
    with pytest.raises(ValueError) as caught:
        score_entities([[]], [[(0, 1, "A"), span]], record_ids=["rec-7"])
    assert message in str(caught.value)
    assert "record 'rec-7', predictions, span 1" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_mismatched_record_counts():
    with pytest.raises(ValueError, match="as many predicted records as gold records"):
        score_entities([[]], [])


def test_report_json_and_table():
    report = score_entities(
        [[(0, 2, "疾病和诊断"), (3, 4, "TNM")]],
        [[(0, 2, "疾病和诊断")]],
        classes={"诊断": ["疾病和诊断"], "Tests": ["TNM"]},
    )
    assert json.loads(report.to_json()) == report.to_dict()
    assert report.to_json() == report.to_json()  # deterministic
    assert "疾病和诊断" in report.to_json()  # written as text, not \\u escapes

    table = format_report(report, digits=3).splitlines()
    names = [line.split("  ")[0].strip() for line in table if line and line[0] != "-"]
    assert names[:3] == ["entity type", "TNM", "疾病和诊断"]
    assert names[3:] == [
        "micro avg",
        "macro avg",
        "class 诊断",
        "class Tests",
        "partial: type overlap",
        "partial: exact boundary",
        "records: 1",
    ]
    # Columns line up on screen: a CJK character takes two columns
    from clinical_ner_zh.metrics.entity_scores import _display_width

    rows = [line for line in table if line and line[0] != "-" and "records:" not in line]
    assert len({_display_width(line) for line in rows}) == 1
    assert "1.000" in table[3]


# --- cross-check with seqeval ---------------------------------------------------------------------------------------

TYPES = ["疾病和诊断", "药物", "TNM", "Ki67"]


@st.composite
def non_overlapping_spans(draw, length: int) -> list[tuple[int, int, str]]:
    """Spans tiling part of ``[0, length)``: cut points, then each piece is an entity of some type or nothing."""
    cuts = sorted(draw(st.sets(st.integers(0, length), max_size=length)) | {0, length})
    spans = []
    for start, end in itertools.pairwise(cuts):
        label = draw(st.sampled_from([*TYPES, None]))
        if label is not None:
            spans.append((start, end, label))
    return spans


@st.composite
def gold_and_predicted(draw):
    """Records of gold spans and predictions that share some spans exactly (so that true positives occur)."""
    lengths = draw(st.lists(st.integers(1, 16), min_size=1, max_size=4))
    gold, predicted = [], []
    for length in lengths:
        gold_spans = draw(non_overlapping_spans(length))
        kept = [span for span in gold_spans if draw(st.booleans())]
        predicted_spans, _ = resolve_overlaps(kept + draw(non_overlapping_spans(length)))
        gold.append(gold_spans)
        predicted.append(predicted_spans)
    return lengths, gold, predicted


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@settings(max_examples=300, deadline=None)
@given(gold_and_predicted())
def test_strict_scores_equal_seqeval_strict_iob2(case):
    lengths, gold, predicted = case
    y_true = [spans_to_tags(spans, length, "BIO") for spans, length in zip(gold, lengths, strict=True)]
    y_pred = [spans_to_tags(spans, length, "BIO") for spans, length in zip(predicted, lengths, strict=True)]
    options = dict(mode="strict", scheme=IOB2, zero_division=0)
    report = score_entities(gold, predicted)

    assert report.micro.precision == pytest.approx(precision_score(y_true, y_pred, **options))
    assert report.micro.recall == pytest.approx(recall_score(y_true, y_pred, **options))
    assert report.micro.f1 == pytest.approx(f1_score(y_true, y_pred, **options))

    expected = classification_report(y_true, y_pred, output_dict=True, **options)
    per_type = {name: row for name, row in expected.items() if not name.endswith(" avg")}
    assert sorted(per_type) == list(report.per_type)
    for name, row in per_type.items():
        score = report.per_type[name]
        assert (score.precision, score.recall, score.f1) == pytest.approx(
            (row["precision"], row["recall"], row["f1-score"])
        )
        assert score.support == row["support"]
    if per_type:  # seqeval's macro mean over no types is NaN; ours is 0.0
        macro = expected["macro avg"]
        assert (report.macro.precision, report.macro.recall, report.macro.f1) == pytest.approx(
            (macro["precision"], macro["recall"], macro["f1-score"])
        )


@settings(max_examples=200, deadline=None)
@given(gold_and_predicted(), st.randoms(use_true_random=False))
def test_partial_scores_bound_strict_and_ignore_span_order(case, rng: random.Random):
    _, gold, predicted = case
    report = score_entities(gold, predicted)
    assert report.micro.true_positives <= report.type_overlap.true_positives
    assert report.micro.true_positives <= report.exact_boundary.true_positives
    shuffled = [rng.sample(spans, len(spans)) for spans in predicted]
    assert score_entities(gold, shuffled) == report
    swapped = score_entities(predicted, gold)  # swapping roles swaps precision and recall
    assert (swapped.type_overlap.precision, swapped.type_overlap.recall) == (
        report.type_overlap.recall,
        report.type_overlap.precision,
    )


def brute_force_matches(gold: list, predicted: list, match) -> int:
    """Largest number of one-to-one (predicted, gold) pairs satisfying ``match``, by trying every assignment."""
    if not predicted:
        return 0
    first, rest = predicted[0], predicted[1:]
    best = brute_force_matches(gold, rest, match)  # first left unmatched
    for index, candidate in enumerate(gold):
        if match(first, candidate):
            best = max(best, 1 + brute_force_matches(gold[:index] + gold[index + 1 :], rest, match))
    return best


def any_spans(max_size: int):
    """Possibly overlapping and nested spans over 12 characters, two types (the hard case for matching)."""
    span = st.tuples(st.integers(0, 11), st.integers(1, 6), st.sampled_from(["A", "B"]))
    return st.lists(span.map(lambda s: (s[0], s[0] + s[1], s[2])), max_size=max_size, unique=True)


@settings(max_examples=200, deadline=None)
@given(any_spans(6), any_spans(6))
def test_partial_counts_equal_brute_force_maximum_matching(gold, predicted):
    report = score_entities([gold], [predicted])

    def overlap_same_type(p, g):
        return p[2] == g[2] and p[0] < g[1] and g[0] < p[1]

    def same_boundary(p, g):
        return p[:2] == g[:2]

    assert report.type_overlap.true_positives == brute_force_matches(gold, predicted, overlap_same_type)
    assert report.exact_boundary.true_positives == brute_force_matches(gold, predicted, same_boundary)
    assert report.micro.true_positives == len(set(gold) & set(predicted))


# --- the evaluate module --------------------------------------------------------------------------------------------

GOLD = [
    [{"start": 0, "end": 2, "label": "Nodule"}, {"start": 3, "end": 9, "label": "Chemotherapy"}],
    [{"start": 1, "end": 4, "label": "Time"}],
    [],
]
PIPELINE_OUTPUT = [
    [{"entity_group": "Nodule", "start": 0, "end": 2, "score": 0.98, "word": "肿块"}],
    [{"entity_group": "Time", "start": 1, "end": 3, "score": 0.5, "word": "20"}],
    [{"entity_group": "Nodule", "start": 0, "end": 1, "score": 0.4, "word": "左"}],
]
CLASSES = {"Symptoms": ["Nodule"], "Treatments": ["Chemotherapy"], "Time": ["Time"]}


def test_evaluate_load_local_path_offline_in_a_fresh_process(tmp_path):
    """evaluate copies the module file into its cache; it must still find the library, offline, from elsewhere."""
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"predictions": PIPELINE_OUTPUT, "references": GOLD, "classes": CLASSES}))
    code = f"""
        import json, evaluate
        inputs = json.load(open({str(inputs)!r}))
        metric = evaluate.load({metrics.EVALUATE_MODULE_PATH!r})
        print(json.dumps(metric.compute(**inputs)))
        # The incremental API gives the same numbers: two records through add_batch, the last one through add
        metric.add_batch(predictions=inputs["predictions"][:2], references=inputs["references"][:2])
        metric.add(prediction=inputs["predictions"][2], reference=inputs["references"][2])
        print(json.dumps(metric.compute(classes=inputs["classes"])))
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env["HF_MODULES_CACHE"] = str(tmp_path / "hf_modules")
    # The package must be importable by installation, not because the repository is the working directory
    repository = str(Path(metrics.__file__).resolve().parents[1])
    if not _installed():
        env["PYTHONPATH"] = repository
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = score_entities(GOLD, PIPELINE_OUTPUT, classes=CLASSES).to_dict()
    at_once, incremental = result.stdout.strip().splitlines()[-2:]
    assert json.loads(at_once) == expected
    assert json.loads(incremental) == expected
    assert expected["micro"]["true_positives"] == 1 and expected["type_overlap"]["true_positives"] == 2


def _installed() -> bool:
    """Whether ``clinical_ner_zh.metrics`` is importable in a process that does not start in the repository."""
    code = "from clinical_ner_zh import metrics"
    return subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True).returncode == 0


# --- command line -------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def exit_status(command, argv: list[str]) -> int:
    """The exit status of ``command`` run through its ``__main__`` wrapper."""
    with pytest.raises(SystemExit) as stopped:
        run_command(command, argv)
    return stopped.value.code


def records_of(spans_per_record: list, text: str = SECRET) -> list[dict]:
    return [{"id": f"r{i}", "text": text, "entities": spans} for i, spans in enumerate(spans_per_record)]


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    gold = write_jsonl(tmp_path / "gold.jsonl", records_of(GOLD))
    # Predictions in another order, without text, with pipeline keys: matched by id
    predictions = [{"id": f"r{i}", "entities": spans} for i, spans in enumerate(PIPELINE_OUTPUT)][::-1]
    pred = write_jsonl(tmp_path / "pred.jsonl", predictions)
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(CLASSES))
    output = tmp_path / "report.json"

    assert main([str(gold), str(pred), "--output", str(output), "--classes", str(classes)]) == 0
    table = capsys.readouterr().out
    assert "micro avg" in table and "class Symptoms" in table and "records: 3" in table
    assert (
        json.loads(output.read_text(encoding="utf-8"))
        == score_entities(GOLD, PIPELINE_OUTPUT, classes=CLASSES).to_dict()
    )

    assert main([str(gold), str(pred), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["support"] == 3


def test_cli_as_a_module(tmp_path):
    gold = write_jsonl(tmp_path / "gold.jsonl", records_of(GOLD))
    result = subprocess.run(
        [sys.executable, "-m", "clinical_ner_zh.metrics", str(gold), str(gold)],
        cwd=Path(metrics.__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "micro avg" in result.stdout


@pytest.mark.parametrize(
    ("gold_lines", "pred_lines", "message"),
    [
        (['{"id": "r0", "entities": []}', '{"id": "r1", "text": "' + SECRET], None, "gold.jsonl:2: invalid JSON"),
        (['{"id": "r0", "entities": []}', "[1, 2]"], None, "gold.jsonl:2: expected a JSON object"),
        (['{"text": "' + SECRET + '", "entities": []}'], None, "gold.jsonl:1: the record has no 'id' key"),
        (['{"id": "r0", "entities": []}', '{"id": "r0", "entities": []}'], None, "gold.jsonl:2: id 'r0' appears twice"),
        (
            ['{"id": "r0", "text": "' + SECRET + '", "entities": [{"start": 0, "end": 99, "label": "A"}]}'],
            None,
            "gold.jsonl:1: record 'r0', entity 0: end 99 is past the end of the text (9 characters)",
        ),
        (
            ['{"id": "r0", "entities": []}'],
            ['{"id": "r0", "entities": [{"start": 2, "end": 1, "entity_group": "A", "word": "' + SECRET + '"}]}'],
            "pred.jsonl:1: record 'r0', entity 0: expected 0 <= start < end, got start=2, end=1",
        ),
        (
            ['{"id": "r0", "entities": []}', '{"id": 7, "entities": []}'],
            ['{"id": "r0", "entities": []}'],
            "1 ids in {gold} are missing from {pred}: '7'",
        ),
        (
            ['{"id": "r0", "entities": []}'],
            ['{"id": "r0", "entities": []}', '{"id": "extra", "entities": []}'],
            "1 ids in {pred} are missing from {gold}: 'extra'",
        ),
    ],
    ids=["json", "not-object", "no-id", "duplicate-id", "past-text", "bad-span", "missing-pred", "missing-gold"],
)
def test_cli_bad_input_names_file_and_line_never_text(tmp_path, capsys, gold_lines, pred_lines, message):
    gold = tmp_path / "gold.jsonl"
    pred = tmp_path / "pred.jsonl"
    # A byte-order mark, as CCKS files have, is not an error
    gold.write_text("\ufeff" + "\n".join(gold_lines) + "\n", encoding="utf-8")
    pred.write_text("\n".join(pred_lines or ['{"id": "r0", "entities": []}']) + "\n", encoding="utf-8")

    assert exit_status(main, [str(gold), str(pred)]) == 2
    error = capsys.readouterr().err
    assert message.format(gold=gold, pred=pred) in error
    assert SECRET not in error


def test_cli_missing_file(tmp_path, capsys):
    assert exit_status(main, [str(tmp_path / "absent.jsonl"), str(tmp_path / "absent.jsonl")]) == 2
    assert "absent.jsonl: cannot read the file" in capsys.readouterr().err


def test_cli_refuses_same_ids_on_different_texts(tmp_path, capsys):
    # Two files made from different inputs share ids r0, r1, ... by chance: scoring them would be meaningless.
    gold = write_jsonl(tmp_path / "gold.jsonl", records_of(GOLD, text="左乳肿块，化疗6周期后"))
    pred = write_jsonl(tmp_path / "pred.jsonl", records_of(GOLD, text=SECRET))
    assert exit_status(main, [str(gold), str(pred)]) == 2
    error = capsys.readouterr().err
    assert error == (
        f"error: 3 records have one text in {gold} and another in {pred} (records are matched by id: were both made"
        " from the same input?): 'r0', 'r1', 'r2'\n"
    )
    assert SECRET not in error


@pytest.mark.parametrize("empty", ["gold", "pred"])
def test_cli_refuses_a_file_without_records(tmp_path, capsys, empty):
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", records_of(GOLD)) for name in ("gold", "pred")}
    files[empty].write_text("\ufeff\n\n", encoding="utf-8")
    assert exit_status(main, [str(files["gold"]), str(files["pred"])]) == 2
    assert capsys.readouterr().err == f"error: {files[empty]}: the file holds no records\n"


def test_cli_reads_ccks_and_label_studio_gold(tmp_path, capsys):
    from .helpers import write_ccks

    text = "右乳癌术后，化疗6周期。"
    write_ccks(tmp_path / "gold.jsonl", [{"text": text, "entities": [{"start": 0, "end": 3, "label": "Disease"}]}])
    pred = write_jsonl(
        tmp_path / "pred.jsonl",
        [{"id": "gold:1", "text": text, "entities": [{"start": 0, "end": 3, "label": "Disease"}]}],
    )
    assert exit_status(main, [str(tmp_path / "gold.jsonl"), str(pred), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["f1"] == 1.0

    export = [
        {
            "id": 4,
            "data": {"text": text},
            "annotations": [
                {
                    "result": [
                        {"type": "labels", "value": {"start": 0, "end": 3, "text": "右乳癌", "labels": ["Nodule"]}}
                    ]
                }
            ],
        }
    ]
    (tmp_path / "export.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": 4, "text": text, "entities": []}])
    assert exit_status(main, [str(tmp_path / "export.json"), str(pred), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro"]["support"] == 1


def test_cli_output_equal_to_an_input_keeps_the_input(tmp_path, capsys):
    gold = write_jsonl(tmp_path / "gold.jsonl", records_of(GOLD))
    before = gold.read_bytes()
    assert exit_status(main, [str(gold), str(gold), "--output", str(gold)]) == 2
    assert capsys.readouterr().err == f"error: --output {gold} is GOLD: choose another path for the report\n"
    assert gold.read_bytes() == before


def region(start: int, end: int, label: str, text: str) -> dict:
    return {"type": "labels", "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]}}


def test_cli_scores_the_same_label_name_as_one_type_in_every_format(tmp_path, capsys):
    from .helpers import write_ccks

    text = "患者药物时间"
    write_ccks(tmp_path / "gold.jsonl", [{"text": text, "entities": [{"start": 2, "end": 4, "label": "Drug"}]}])
    assert "药物" in (tmp_path / "gold.jsonl").read_text(encoding="utf-8-sig")  # the official CCKS label
    pred = write_jsonl(
        tmp_path / "pred.jsonl", [{"id": "gold:1", "entities": [{"start": 2, "end": 4, "label": "药物"}]}]
    )
    assert exit_status(main, [str(tmp_path / "gold.jsonl"), str(pred), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["micro"]["f1"] == 1.0 and list(report["per_type"]) == ["Drug"]


def test_cli_reads_a_label_studio_export_with_any_model_labels_and_its_predictions_as_pred(tmp_path, capsys):
    text = "患者药物时间"
    export = [
        {
            "id": 4,
            "data": {"text": text},
            # the annotator deleted the model's Nodule region and kept the others; Drug and Dose are no
            # breast-cancer types (a CCKS model's, a custom model's)
            "annotations": [{"result": [region(2, 4, "Drug", text), region(4, 6, "Dose", text)]}],
            "predictions": [
                {
                    "model_version": "v1",
                    "result": [region(0, 2, "Nodule", text), region(2, 4, "药物", text), region(4, 6, "Dose", text)],
                }
            ],
        }
    ]
    (tmp_path / "export.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    assert exit_status(main, [str(tmp_path / "export.json"), str(tmp_path / "export.json"), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["micro"]["support"], report["micro"]["predicted"], report["micro"]["true_positives"]) == (2, 3, 2)
    assert report["per_type"]["Dose"]["f1"] == 1.0 and report["per_type"]["Nodule"]["precision"] == 0.0

    del export[0]["predictions"]
    (tmp_path / "plain.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": 4, "text": text, "entities": []}])
    assert exit_status(main, [str(gold), str(tmp_path / "plain.json")]) == 2
    # a predictions-free export as PRED is refused, not read as annotations
    assert capsys.readouterr().err == f"error: {tmp_path / 'plain.json'}: record 4: no prediction\n"


def test_cli_keeps_a_custom_label_as_it_is_in_an_export_as_in_a_span_file(tmp_path, capsys):
    """Two custom labels that differ only in a space and an underscore are two types in a span file; a Label Studio
    export used to fold them into one (through the alias table's normalisation), so the same annotations in the two
    formats scored F1 0.5 against each other."""
    text = "肿块大小肿块位置"
    spans = [(0, 4, "tumor size"), (4, 8, "tumor_size")]
    export = [{"id": 1, "data": {"text": text}, "annotations": [{"result": [region(*span, text) for span in spans]}]}]
    (tmp_path / "export.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    entities = [{"start": start, "end": end, "label": label} for start, end, label in spans]
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": 1, "text": text, "entities": entities}])
    assert exit_status(main, [str(tmp_path / "export.json"), str(pred), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["micro"]["f1"] == 1.0 and sorted(report["per_type"]) == ["tumor size", "tumor_size"]


def test_cli_refuses_negative_digits(tmp_path, capsys):
    gold = write_jsonl(tmp_path / "gold.jsonl", records_of(GOLD))
    assert exit_status(main, [str(gold), str(gold), "--digits", "-1"]) == 2
    assert capsys.readouterr().err == "error: --digits -1: expected 0 or more decimals\n"
