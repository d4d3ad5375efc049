"""train_ner.py's corpus: each file given is read as its split, the dev split comes from exactly one place, and what
cannot make a training run stops it before training with one line naming the file or option."""

from __future__ import annotations

import json

import datasets
import pytest

import train_ner
from clinical_ner_zh.datasets_scripts import FEATURES, WindowEncoder, build_char_tokenizer, decode_dataset, split_of
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records
from clinical_ner_zh.training.common import ConfigurationError, parse_arguments

from .helpers import simulated_ccks_records, write_ccks, write_label_studio_json


def corpus_of(argv: list[str]):
    """The splits, types and classes train_ner.py trains on for ``argv``, and its parsed data arguments."""
    model_args, data_args, train_args = parse_arguments(
        (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments), argv
    )
    train_ner.validate_arguments(model_args, data_args, train_args)
    return train_ner.load_corpus(data_args, train_args.seed), data_args


def breast_export(path, task_ids: range | list[int]):
    """A Label Studio export of simulated records with these task ids."""
    records = simulated_breast_cancer_records(len(task_ids), seed=task_ids[0], long_records=0)
    return write_label_studio_json(path, [{**r, "id": str(i)} for i, r in zip(task_ids, records)])


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    return {
        "train": breast_export(folder / "train.json", range(1, 21)),
        "dev": breast_export(folder / "dev.json", range(1001, 1007)),
        "test": breast_export(folder / "test.json", range(2001, 2006)),
    }


def ids(split) -> set[int]:
    return set(map(int, split["id"]))


def test_breast_cancer_reads_the_given_files_as_their_splits(exports):
    (corpus, _, classes), _ = corpus_of([
        "--corpus=breast_cancer", f"--train_file={exports['train']}", f"--validation_file={exports['dev']}",
        f"--test_file={exports['test']}",
    ])  # fmt: skip
    assert ids(corpus["train"]) == set(range(1, 21))
    assert ids(corpus["validation"]) == set(range(1001, 1007))
    assert ids(corpus["test"]) == set(range(2001, 2006))
    assert classes["Nodule"] == "Symptoms"


def test_breast_cancer_with_a_test_file_carves_the_dev_split_from_the_training_export(exports):
    (corpus, _, _), data_args = corpus_of([
        "--corpus=breast_cancer", f"--train_file={exports['train']}", f"--test_file={exports['test']}",
        "--dev_fraction=0.25",
    ])  # fmt: skip
    assert len(corpus["validation"]) == 5 and len(corpus["train"]) == 15
    assert ids(corpus["train"]) | ids(corpus["validation"]) == set(range(1, 21))
    assert ids(corpus["test"]) == set(range(2001, 2006))
    # Without --dev_fraction, its default share.
    (corpus, _, _), data_args = corpus_of([
        "--corpus=breast_cancer", f"--train_file={exports['train']}", f"--test_file={exports['test']}",
    ])  # fmt: skip
    assert data_args.dev_fraction == train_ner.DEV_FRACTION and len(corpus["validation"]) == 2


def test_a_lone_breast_cancer_export_is_split_by_task_id(exports):
    (corpus, _, _), data_args = corpus_of(["--corpus=breast_cancer", f"--train_file={exports['train']}"])
    assert sorted(ids(corpus["train"]) | ids(corpus["validation"]) | ids(corpus["test"])) == list(range(1, 21))
    assert data_args.dev_fraction == 0.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--dev_fraction=0.2"],
            r"--dev_fraction 0.2: --corpus breast_cancer splits a lone export 6:2:2 by a hash of each task id; to "
            r"choose the splits give --validation_file and/or --test_file",
        ),
        (
            ["--validation_file={dev}", "--dev_fraction=0.2"],
            "--dev_fraction 0.2 and --validation_file both choose the dev split: give one of them",
        ),
    ],
)
def test_a_dev_fraction_that_would_be_ignored_is_refused(exports, extra, message):
    argv = ["--corpus=breast_cancer", f"--train_file={exports['train']}", *(a.format(**exports) for a in extra)]
    with pytest.raises(ConfigurationError, match=message):
        corpus_of(argv)


def test_the_model_card_names_the_split_files_of_a_breast_cancer_run(exports):
    from clinical_ner_zh.training.model_card import describe_data

    _, data_args = corpus_of([
        "--corpus=breast_cancer", f"--train_file={exports['train']}", f"--validation_file={exports['dev']}",
        f"--test_file={exports['test']}",
    ])  # fmt: skip
    assert "Splits: validation `dev.json`; test `test.json`." in describe_data(data_args, 20, {})[1]


def test_an_empty_dev_split_is_refused(tmp_path):
    """4 records and the default --dev_fraction 0.1: round(0.4) = 0 dev records, every evaluation would score F1 0."""
    train = write_ccks(tmp_path / "ccks.jsonl", simulated_ccks_records(4))
    with pytest.raises(ConfigurationError) as refused:
        corpus_of(["--corpus=ccks2019", f"--train_file={train}"])
    assert str(refused.value) == (
        f"the validation split is empty: --dev_fraction 0.1 of the 4 records of {train} leaves none there: raise "
        f"--dev_fraction or give --validation_file"
    )
    (corpus, _, _), _ = corpus_of(["--corpus=ccks2019", f"--train_file={train}", "--dev_fraction=0.25"])
    assert (len(corpus["train"]), len(corpus["validation"])) == (3, 1)


def test_an_export_whose_task_ids_all_hash_outside_train_is_refused(tmp_path):
    """Task ids 2, 6 and 11 hash to validation or test: the 6:2:2 split of this export leaves train empty."""
    export = breast_export(tmp_path / "small.json", [2, 6, 11])
    assert {split_of(task_id) for task_id in ("2", "6", "11")} <= {"validation", "test"}
    with pytest.raises(ConfigurationError) as refused:
        corpus_of(["--corpus=breast_cancer", f"--train_file={export}"])
    assert str(refused.value) == (
        f"the train split is empty: the 6:2:2 split of the 3 tasks of {export} by task id puts none there: give "
        f"--validation_file and/or --test_file to choose the splits"
    )


@pytest.mark.parametrize(
    ("family", "extra", "option", "of"),
    [
        (None, ["--kg_embeddings=outputs/kge", "--lexicon=terms.tsv"], "kg_embeddings", "clinicalbert-kg"),
        ("chcancerbert", ["--lexicon=terms.tsv"], "lexicon", "clinicalbert-kg"),
        ("chcancerbert", ["--min_term_length=3"], "min_term_length", "clinicalbert-kg"),
        ("chcancerbert", ["--freeze_kg_embeddings=false"], "freeze_kg_embeddings", "clinicalbert-kg"),
        ("clinicalbert-kg", ["--dgcnn_dilations", "1", "2"], "dgcnn_dilations", "chcancerbert"),
        ("clinicalbert-kg", ["--fusion_num_heads=4"], "fusion_num_heads", "chcancerbert"),
    ],
)
def test_an_option_of_the_other_family_is_refused(exports, family, extra, option, of):
    """Family A ignored the knowledge options (a forgotten --family trained family A without a word), family B the
    DGCNN and fusion options."""
    trains = family or "chcancerbert"
    argv = ["--corpus=breast_cancer", f"--train_file={exports['train']}", *extra]
    argv += [f"--family={family}", "--variant=no-kg"] if family == "clinicalbert-kg" else []
    argv += [f"--family={family}"] if family == "chcancerbert" else []
    with pytest.raises(ConfigurationError) as refused:
        corpus_of(argv)
    assert str(refused.value) == (
        f"--{option} is an option of --family {of}, and this run trains {trains}: give --family {of}, or drop --{option}"
    )


def test_an_option_of_the_other_family_at_its_default_is_accepted(exports):
    """A shared configuration file may spell out another family's defaults: they change nothing."""
    corpus_of([
        "--corpus=breast_cancer", f"--train_file={exports['train']}", "--family=clinicalbert-kg", "--variant=no-kg",
        "--fusion_num_heads=8", "--dgcnn_dilations", "1", "2", "4",
    ])  # fmt: skip


def test_a_span_type_only_in_the_dev_file_is_a_label_of_the_model(tmp_path, caplog):
    """A rare type that happens to occur only in dev (here Time) crashed the encoding of dev with a KeyError."""
    train = spans_file(tmp_path / "train.jsonl", [("口服来曲唑。", [(2, 5, "Drug")])] * 6)
    dev = spans_file(tmp_path / "dev.jsonl", [("口服来曲唑，2020年复查。", [(2, 5, "Drug"), (6, 11, "Time")])] * 2)
    (corpus, types, _), _ = corpus_of(["--corpus=spans", f"--train_file={train}", f"--validation_file={dev}"])
    assert types == ["Drug", "Time"]
    assert "validation split: types not in the train split, which the model cannot learn (scored as missed): Time" in (
        caplog.text
    )
    encoder = WindowEncoder(build_char_tokenizer(corpus["train"]["text"]), types, max_length=32, stride=8)
    windows, _ = train_ner.encode_corpus(corpus, encoder)
    paths = [[label for label in window["labels"] if label >= 0] for window in windows["validation"]]
    assert decode_dataset(windows["validation"], paths, encoder)[0] == [(2, 5, "Drug"), (6, 11, "Time")]


def spans_file(path, records: list[tuple[str, list[tuple[int, int, str]]]]):
    """Span-schema JSON lines: (text, [(start, end, label)]) per record."""
    lines = [
        json.dumps(
            {
                "id": f"r{n}",
                "text": text,
                "entities": [dict(start=s, end=e, label=label, text=text[s:e]) for s, e, label in spans],
            }
        )
        for n, (text, spans) in enumerate(records)
    ]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("parquet", ["train", "validation"])
def test_each_span_file_is_read_in_its_own_format(tmp_path, parquet):
    """A Parquet training file beside a JSON-lines dev file (and the reverse): each file is read by its extension;
    before, the training file's format was used for every split (a traceback, or 'no usable record')."""
    files = {
        "train": spans_file(tmp_path / "train.jsonl", [("口服来曲唑。", [(2, 5, "Drug")])] * 4),
        "validation": spans_file(tmp_path / "dev.jsonl", [("2020年复查。", [(0, 5, "Time")])] * 2),
    }
    records = datasets.Dataset.from_json(str(files[parquet]), features=FEATURES)
    files[parquet] = files[parquet].with_suffix(".parquet")
    records.to_parquet(files[parquet])
    (corpus, types, _), _ = corpus_of([
        "--corpus=spans", f"--train_file={files['train']}", f"--validation_file={files['validation']}",
    ])  # fmt: skip
    assert (len(corpus["train"]), len(corpus["validation"])) == (4, 2) and types == ["Drug", "Time"]
    assert corpus["validation"][0]["entities"] == [{"start": 0, "end": 5, "label": "Time", "text": "2020年"}]


def test_a_parquet_file_without_the_span_columns_is_refused(tmp_path):
    path = tmp_path / "other.parquet"
    datasets.Dataset.from_dict({"id": ["a"], "sentence": ["口服来曲唑。"]}).to_parquet(path)
    with pytest.raises(ConfigurationError) as refused:
        corpus_of(["--corpus=spans", f"--train_file={path}"])
    assert str(refused.value) == (
        f"{path}: not a Parquet file of span-schema records (id, text, entities): because column names don't match"
    )


def test_max_bad_fraction_is_checked_per_file(tmp_path):
    """4 bad lines of a 10-line test file beside 30 good training records: 4 of 40 read was under 5%, and 'test'
    was scored on 6 of its 10 records."""
    train = write_ccks(tmp_path / "train.jsonl", simulated_ccks_records(30))
    test = write_ccks(tmp_path / "test.jsonl", simulated_ccks_records(6, seed=3), crlf=False)
    with test.open("a", encoding="utf-8") as handle:
        handle.write('{"originalText": "术后\n{bad\n[]\n{"x": 1}\n')
    with pytest.raises(ConfigurationError) as refused:
        corpus_of(["--corpus=ccks2019", f"--train_file={train}", f"--test_file={test}"])
    assert str(refused.value) == (
        f"{test}: 4 of 10 records dropped (bad_json 2, missing_field 1, wrong_type 1), more than --max_bad_fraction "
        f"0.05: fix the file (the log names each record) or raise --max_bad_fraction"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--dev_fraction=1.0", r"--dev_fraction 1.0: expected a share in [0, 1)"),
        ("--per_device_train_batch_size=0", "--per_device_train_batch_size 0: expected a count >= 1"),
        ("--per_device_eval_batch_size=0", "--per_device_eval_batch_size 0: expected a count >= 1"),
        ("--gradient_accumulation_steps=0", "--gradient_accumulation_steps 0: expected a count >= 1"),
        ("--logging_steps=0", "--logging_steps 0: expected a count >= 1"),
        ("--eval_steps=-1", "--eval_steps -1: expected a count >= 0"),
        ("--num_train_epochs=0", "--num_train_epochs 0: expected a count >= 1"),
        ("--head_learning_rate=-0.001", "--head_learning_rate -0.001: expected a value >= 0.0"),
        ("--warmup_ratio=1", "--warmup_ratio 1.0: expected a share in [0, 1)"),  # the schedule refused it, later
    ],
)
def test_a_number_out_of_range_is_refused_before_anything_is_read(tmp_path, option, message):
    """These were tracebacks (a ValueError of the dev split or the DataLoader, a division by zero after the first
    step that left an output folder behind) or, for --eval_steps -1, an evaluation at every step."""
    train = write_ccks(tmp_path / "ccks.jsonl", simulated_ccks_records(10))
    with pytest.raises(ConfigurationError) as refused:
        corpus_of(["--corpus=ccks2019", f"--train_file={train}", option])
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--corpus=ccks2019", "--train_file={train}"], "--dataset_name is read as --corpus spans, not ccks2019"),
        (
            ["--corpus=spans", "--test_file={test}"],
            "--dataset_name hospital/ner-spans brings its own splits: drop --test_file, or give the files without "
            "--dataset_name",
        ),
    ],
)
def test_files_or_a_corpus_format_beside_a_dataset_are_refused(exports, extra, message):
    """load_corpus reads --dataset_name alone: a --train_file/--test_file beside it, or its CCKS format, was ignored."""
    argv = ["--dataset_name=hospital/ner-spans", *(a.format(**exports) for a in extra)]
    with pytest.raises(ConfigurationError) as refused:
        corpus_of(argv)
    assert str(refused.value) == message


def test_a_small_export_without_test_records_trains_without_a_test_split(tmp_path, caplog):
    """Task ids 1, 2 and 4 hash to train, validation and train: no test split to score, but a run to make."""
    export = breast_export(tmp_path / "small.json", [1, 2, 4])
    assert [split_of(task_id) for task_id in ("1", "2", "4")] == ["train", "validation", "train"]
    (corpus, _, _), _ = corpus_of(["--corpus=breast_cancer", f"--train_file={export}"])
    assert {split: len(records) for split, records in corpus.items()} == {"train": 2, "validation": 1}
    assert f"the test split is empty: the 6:2:2 split of the 3 tasks of {export} by task id" in caplog.text


def test_a_dataset_without_a_validation_split_gives_dev_its_dev_fraction(tmp_path):
    """A dataset (here a local folder of span files, as load_dataset reads a Hub repository) with train and test
    splits only: the dev split is carved from train as for files. It used to be refused with advice to give
    --validation_file, which cannot go beside --dataset_name."""
    folder = tmp_path / "hospital-ner"
    folder.mkdir()
    spans_file(folder / "train.jsonl", [(f"口服来曲唑{n}片。", [(2, 5, "Drug")]) for n in range(20)])
    spans_file(folder / "test.jsonl", [("口服来曲唑。", [(2, 5, "Drug")])] * 3)
    (corpus, types, _), _ = corpus_of(["--corpus=spans", f"--dataset_name={folder}", "--dev_fraction=0.25"])
    assert {split: len(corpus[split]) for split in corpus} == {"train": 15, "validation": 5, "test": 3}
    assert not set(corpus["train"]["text"]) & set(corpus["validation"]["text"]) and types == ["Drug"]


@pytest.mark.parametrize("source", ["parquet", "dataset"])
def test_parquet_and_dataset_records_are_checked_as_those_of_a_file(tmp_path, source, caplog):
    """An entity whose offsets count UTF-16 units (its text says so) or run past its record, in a Parquet file or a
    dataset, was trained as it stood: shifted, or cut without a word. Dropped and logged, as in a JSON-lines file."""
    text = "𠮷口服来曲唑。"  # an astral character first: UTF-16 offsets of 来曲唑 are 4-7, character offsets 3-6
    good = [(f"口服来曲唑{n}片。", [(2, 5, "Drug")]) for n in range(19)]
    lines = spans_file(tmp_path / "train.jsonl", good).read_text(encoding="utf-8").splitlines()
    bad = {"id": "bad", "text": text, "entities": [{"start": 4, "end": 7, "label": "Drug", "text": "来曲唑"},
                                                    {"start": 6, "end": 40, "label": "Drug", "text": None}]}  # fmt: skip
    rows = [json.loads(line) for line in lines] + [bad]
    folder = tmp_path / "data"
    folder.mkdir()
    if source == "parquet":
        datasets.Dataset.from_list(rows, features=FEATURES).to_parquet(folder / "train.parquet")
        argv = [f"--train_file={folder / 'train.parquet'}"]
    else:
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        argv = [f"--dataset_name={folder}"]
    (corpus, _, _), _ = corpus_of(["--corpus=spans", "--dev_fraction=0.25", "--max_bad_fraction=0.2", *argv])
    everything = [record for split in corpus.values() for record in split]
    assert [r["entities"] for r in everything if r["id"] == "bad"] == [[]]
    assert sum(len(r["entities"]) for r in everything) == 19
    assert "record bad: entity 0: entity text disagrees with text[4:7]" in caplog.text
    assert "record bad: entity 1: offsets out of range (start=6, end=40, text length 7)" in caplog.text
