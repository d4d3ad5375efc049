"""train_ner.py's corpus: each file given is read as its split, the dev split comes from exactly one place, and what
cannot make a training run stops it before training with one line naming the file or option."""

from __future__ import annotations

import pytest

import train_ner
from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records
from clinical_ner_zh.training.common import ConfigurationError, parse_arguments

from .helpers import write_label_studio_json


def corpus_of(argv: list[str]):
    """The splits, types and classes train_ner.py trains on for ``argv``, and its parsed data arguments."""
    model_args, data_args, train_args = parse_arguments(
        (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments), argv
    )
    train_ner.validate_arguments(model_args, data_args, train_args)
    return train_ner.load_corpus(data_args, train_args.seed), data_args


def breast_export(path, count: int, first_id: int):
    """A Label Studio export of ``count`` simulated records with task ids from ``first_id``."""
    records = simulated_breast_cancer_records(count, seed=first_id, long_records=0)
    return write_label_studio_json(path, [{**r, "id": str(first_id + n)} for n, r in enumerate(records)])


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    return {
        "train": breast_export(folder / "train.json", 20, 1),
        "dev": breast_export(folder / "dev.json", 6, 1001),
        "test": breast_export(folder / "test.json", 5, 2001),
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
    assert "Splits: validation `dev.json`; test `test.json`." in describe_data(data_args, 20, {})[2]
