"""The training scripts never overwrite a folder by accident: a non-empty output folder is refused unless
--overwrite_output_dir (which clears a previous run's files) or a checkpoint of the same configuration is resumed;
a corpus that loses too many records stops before training, with the count per reason. The converters (corpus to
Parquet, CMeKG to triples) refuse a non-empty --output-dir too, and replace it only with a complete new folder."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

import train_kge
import train_mlm
import train_ner
from clinical_ner_zh.cli_errors import UserError
from clinical_ner_zh.datasets_scripts import ccks2019
from clinical_ner_zh.kg import cmekg
from clinical_ner_zh.training.common import ConfigurationError, parse_arguments, run_arguments

from .helpers import TINY, ner_args, simulated_ccks_records, write_ccks

ROOT = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def previous_model(folder: Path) -> Path:
    """What another run left: a model, its test report and a checkpoint."""
    (folder / "checkpoints" / "checkpoint_9").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint_9" / "training_state.json").write_text('{"step": 9}')
    (folder / "model.safetensors").write_bytes(b"other model")
    (folder / "test_results.json").write_text('{"f1": 0.9}')
    (folder / "training_args.json").write_text('{"variant": "crf"}')
    return folder


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("train_ner", lambda c, out: ner_args(c, out)),
        ("train_ner", lambda c, out: ner_args(c, out, "--resume_from_checkpoint=latest", "--variant=crf")),
        ("train_mlm", lambda c, out: [f"--train_files={c['breast']}", f"--output_dir={out}"]),
        ("train_kge", lambda c, out: ["--triples", str(c["triples"]), "--output-dir", str(out)]),
    ],
    ids=["ner", "ner-resume-latest-without-checkpoint", "mlm", "kge"],
)
def test_a_non_empty_output_folder_is_untouched_without_the_flag(corpora, tmp_path, script, argv):
    corpora = {**corpora, "triples": tmp_path / "t.tsv"}
    corpora["triples"].write_text("高血压\t症状\t头晕\n", encoding="utf-8")
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.safetensors").write_bytes(b"someone's model")
    (output / "notes.txt").write_text("keep me")
    if "resume" in " ".join(argv(corpora, output)):
        (output / "model.safetensors").unlink()  # --resume_from_checkpoint latest without any checkpoint
    before = snapshot(output)
    with pytest.raises(ConfigurationError, match=rf"output folder {output} is not empty \(.*notes.txt\): "):
        {"train_ner": train_ner, "train_mlm": train_mlm, "train_kge": train_kge}[script].main(argv(corpora, output))
    assert snapshot(output) == before


@pytest.mark.parametrize("script", ["train_ner", "train_mlm", "train_kge"])
def test_an_output_folder_that_cannot_be_written_stops_before_reading(corpora, tmp_path, script, monkeypatch):
    """Checked on every process before the corpus is read: under accelerate launch, the main process alone failed
    to make the folder after loading, while the others waited at a barrier."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder is needed")
    output = blocker / "out"
    argv = {
        "train_ner": ner_args(corpora, output),
        "train_mlm": [f"--train_files={corpora['breast']}", f"--output_dir={output}"],
        "train_kge": ["--triples", str(tmp_path / "missing.tsv"), "--output-dir", str(output)],
    }[script]
    with pytest.raises(UserError, match=rf"^output folder {output}: cannot write in {blocker}$"):
        {"train_ner": train_ner, "train_mlm": train_mlm, "train_kge": train_kge}[script].main(argv)


def test_overwrite_refuses_a_folder_no_training_run_wrote(corpora, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigurationError, match="holds files no training run wrote"):
        train_ner.main(ner_args(corpora, output, "--overwrite_output_dir"))
    assert snapshot(output) == {"thesis.tex": b"years of work"}


def test_overwrite_refuses_a_project_folder_that_merely_holds_logs_and_checkpoints(corpora, tmp_path):
    """A bare logs/ or checkpoints/ folder is no sign of a training run: many projects have one."""
    project = tmp_path / "project"
    (project / "logs").mkdir(parents=True)
    (project / "checkpoints").mkdir()
    (project / "notes.txt").write_text("my notes")
    before = snapshot(project)
    with pytest.raises(ConfigurationError, match="holds files no training run wrote"):
        train_ner.main(ner_args(corpora, project, "--overwrite_output_dir"))
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("script", "flag", "argv"),
    [
        ("train_ner", "--train_file", lambda c, out, kept: ner_args({**c, "breast": kept}, out)),
        ("train_ner", "--config", lambda c, out, kept: [*ner_args(c, out), f"--config={kept}"]),
        ("train_mlm", "--train_files", lambda c, out, kept: [f"--train_files={kept}", f"--output_dir={out}"]),
        ("train_kge", "--triples", lambda c, out, kept: ["--triples", str(kept), "--output-dir", str(out)]),
        (
            "train_kge",
            "--init-from",
            lambda c, out, kept: [
                "--triples",
                str(c["triples"]),
                "--output-dir",
                str(out),
                "--init-from",
                str(out),
                "--model=transr",
            ],
        ),
    ],
    ids=["ner-train-file", "ner-config", "mlm", "kge-triples", "kge-init-from-itself"],
)
def test_overwrite_refuses_to_clear_a_folder_holding_an_input_of_the_run(corpora, tmp_path, script, flag, argv):
    """The run would read its input and then delete it with the previous run's files (TransR --init-from the
    TransE folder it replaces): refused before anything is read or deleted."""
    triples = tmp_path / "t.tsv"
    triples.write_text("高血压\t症状\t头晕\n", encoding="utf-8")
    output = previous_model(tmp_path / "out")
    (output / "entity_embeddings.safetensors").write_bytes(b"TransE vectors")
    kept = {
        "--train_file": output / "train.json",
        "--config": output / "run.yaml",
        "--train_files": output / "corpus.txt",
        "--triples": output / "triples.tsv",
        "--init-from": output,
    }[flag]
    if flag == "--train_file":
        kept.write_bytes(corpora["breast"].read_bytes())
    elif flag != "--init-from":
        kept.write_text({"--config": "variant: crf\n", "--train_files": "文档\n"}.get(flag, triples.read_text()))
    before = snapshot(output)
    command = [*argv({**corpora, "triples": triples}, output, kept), "--overwrite_output_dir"]
    with pytest.raises(ConfigurationError) as caught:
        {"train_ner": train_ner, "train_mlm": train_mlm, "train_kge": train_kge}[script].main(command)
    assert str(caught.value) == (
        f"{flag} {kept} lies in the output folder {output}, which --overwrite_output_dir would clear: move it out, "
        "or choose another output folder"
    )
    assert snapshot(output) == before


def test_overwrite_output_dir_replaces_the_previous_run(corpora, tmp_path):
    output = previous_model(tmp_path / "out")
    train_ner.main(ner_args(corpora, output, "--overwrite_output_dir", "--max_steps=1", "--early_stopping_patience=0"))
    files = {p.name for p in output.iterdir()}
    assert "checkpoints" in files and not (output / "checkpoints" / "checkpoint_9").exists()
    assert (output / "test_results.json").read_text() != '{"f1": 0.9}'  # this run's test scores
    assert (output / "model.safetensors").read_bytes() != b"other model"
    assert json.loads((output / "training_args.json").read_text())["variant"] == "dgcnn-bilstm-mha-crf"


def test_resuming_a_checkpoint_of_another_configuration_says_what_differs(corpora, tmp_path):
    output = previous_model(tmp_path / "out")
    other = parse_arguments(
        (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments),
        ner_args(corpora, output, "--variant=crf", "--max_length=96"),
    )
    train_ner.validate_arguments(*other)
    (output / "checkpoints" / "checkpoint_9" / "run_arguments.json").write_text(json.dumps(run_arguments(*other)))
    before = snapshot(output)
    with pytest.raises(ConfigurationError) as caught:
        train_ner.main(ner_args(corpora, output, "--resume_from_checkpoint=latest"))
    assert str(caught.value) == (
        f"{output / 'checkpoints' / 'checkpoint_9'} was written by another configuration (max_length 96 there, 64 now; "
        "variant 'crf' there, 'dgcnn-bilstm-mha-crf' now): resume with the same arguments, or train afresh in "
        "another folder"
    )
    assert snapshot(output) == before


def test_a_checkpoint_written_before_an_argument_existed_resumes_with_its_default(corpora, tmp_path):
    """An older version's checkpoint does not record an argument added since (here --augment_share): the run that
    wrote it had the default, so the same command resumes it, and another value is refused, saying so."""
    output = tmp_path / "out"
    argv = ner_args(corpora, output, "--max_steps=2", "--checkpointing_steps=1", "--early_stopping_patience=0")
    train_ner.main(argv)
    checkpoint = output / "checkpoints" / "checkpoint_1"  # step 2; checkpoint_0 holds step 1
    for folder in (output / "checkpoints").iterdir():
        saved = json.loads((folder / "run_arguments.json").read_text(encoding="utf-8"))
        del saved["augment_share"]
        (folder / "run_arguments.json").write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        train_ner.main([*argv, "--resume_from_checkpoint=latest", "--augment_share=0.5"])
    assert str(caught.value) == (
        f"{checkpoint} was written by another configuration (augment_share 0.3 there (its default, not recorded), "
        "0.5 now): resume with the same arguments, or train afresh in another folder"
    )
    shutil.rmtree(checkpoint)
    results = train_ner.main([*argv, "--resume_from_checkpoint=latest"])
    assert results["steps"] == 2 and [row["step"] for row in results["history"]] == [2]


def test_a_checkpoint_is_resumed_only_in_its_own_run_folder(corpora, tmp_path):
    """Continued in another --output_dir, a run left there no model unless dev F1 rose again (yet logged 'model
    saved'), and wrote into a non-empty folder of the user's without --overwrite_output_dir."""
    old, new = tmp_path / "old", tmp_path / "new"
    train_ner.main(ner_args(corpora, old, "--max_steps=2", "--checkpointing_steps=1", "--early_stopping_patience=0"))
    checkpoint = old / "checkpoints" / "checkpoint_0"
    new.mkdir()
    (new / "README.md").write_text("# My project")
    argv = ner_args(corpora, new, "--max_steps=2", "--checkpointing_steps=1", "--early_stopping_patience=0")
    with pytest.raises(ConfigurationError) as caught:
        train_ner.main([*argv, f"--resume_from_checkpoint={checkpoint}"])
    assert str(caught.value) == (
        f"--resume_from_checkpoint {checkpoint} is not a checkpoint of the output folder {new}: a run continues in "
        f"its own folder, give --output_dir {old}"
    )
    assert snapshot(new) == {"README.md": b"# My project"}


def ccks_with_bad_lines(path: Path, good: int, bad: int) -> Path:
    write_ccks(path, simulated_ccks_records(good, seed=3), crlf=False, trailing_empty_line=False)
    with path.open("a", encoding="utf-8") as handle:
        for index in range(bad):
            handle.write('\n{"originalText": "患者张三' if index % 2 else '\n{"entities": []}')
    return path


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [
        (
            3,
            7,
            r"ccks.jsonl: 7 of 10 records dropped \(bad_json 3, missing_field 4\), more than --max_bad_fraction 0.05",
        ),
        (0, 4, r"ccks.jsonl: no usable record \(4 dropped: bad_json 2, missing_field 2\)"),
        (0, 0, r"ccks.jsonl: no usable record$"),
    ],
)
def test_a_corpus_losing_too_many_records_stops_before_training(tmp_path, good, bad, message):
    path = ccks_with_bad_lines(tmp_path / "ccks.jsonl", good, bad)
    if not good and not bad:
        path.write_bytes(b"")
    output = tmp_path / "out"
    argv = ["--corpus=ccks2019", f"--train_file={path}", "--dev_fraction=0.2", f"--output_dir={output}", *TINY]
    with pytest.raises(ConfigurationError, match=message):
        train_ner.main(argv)
    assert not output.exists()


def test_max_bad_fraction_lets_a_known_share_through(tmp_path):
    path = ccks_with_bad_lines(tmp_path / "ccks.jsonl", 10, 1)
    argv = ["--corpus=ccks2019", f"--train_file={path}", "--dev_fraction=0.2", f"--output_dir={tmp_path / 'out'}"]
    with pytest.raises(ConfigurationError, match=r"1 of 11 records dropped \(missing_field 1\)"):
        train_ner.main([*argv, *TINY])
    corpus, _, _ = train_ner.load_corpus(
        parse_arguments((train_ner.DataArguments,), [*argv[:3], "--max_bad_fraction=0.1"])[0], seed=0
    )
    assert len(corpus["train"]) + len(corpus["validation"]) == 10


def test_the_demo_replaces_its_own_output_when_run_again():
    *_, train_args = parse_arguments(
        (train_ner.ModelArguments, train_ner.DataArguments, train_ner.TrainArguments), ["--config", "configs/demo.yaml"]
    )
    assert train_args.overwrite_output_dir and train_args.output_dir == "outputs/demo"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (2, r"corpus.txt: 2 of 5 records dropped \(bad_encoding 2\), more than --max_bad_fraction 0.05"),
        (0, r"corpus.txt: no usable record$"),
    ],
)
def test_train_mlm_stops_on_a_corpus_losing_too_many_documents(tmp_path, bad, message):
    corpus = tmp_path / "corpus.txt"
    lines = ["患者左肺结节。".encode()] * (3 if bad else 0) + [b"\xd5\xc5\xc8\xfd"] * bad  # GBK, not UTF-8
    corpus.write_bytes(b"\n\n".join(lines))
    output = tmp_path / "out"
    with pytest.raises(ConfigurationError, match=message):
        train_mlm.main([f"--train_files={corpus}", f"--output_dir={output}", "--max_steps=1"])
    assert not output.exists()


def test_train_mlm_leaves_out_documents_that_are_not_utf8(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes("第一段。\n第一段续。\n\n".encode() + b"\xff\n" + "第二段。\n\n第三段。".encode())
    args = [f"--train_files={corpus}", "--sample_by=paragraph"]
    data_args = parse_arguments((train_mlm.DataArguments,), [*args, "--max_bad_fraction=0.5"])[0]
    assert train_mlm.load_documents(data_args) == ["第一段。\n第一段续。", "第三段。"]
    with pytest.raises(ConfigurationError, match=r"1 of 3 records dropped \(bad_encoding 1\)"):
        train_mlm.load_documents(parse_arguments((train_mlm.DataArguments,), args)[0])


# ---------------------------------------------------------------------------------------------------- converters


def convert_ccks(tmp_path: Path, output: Path, *extra: str, records: int = 6) -> None:
    corpus = write_ccks(tmp_path / "ccks.jsonl", simulated_ccks_records(records, seed=4))
    ccks2019.main([str(corpus), "--output-dir", str(output), *extra])


def convert_cmekg(tmp_path: Path, output: Path, *extra: str, records: int = 6) -> None:
    graph = tmp_path / "cmekg.pkl"
    symptoms = ["头晕", "头痛", "心悸"][: records // 3]
    graph.write_bytes(pickle.dumps({"高血压": {"临床症状及体征": symptoms, "药物治疗": ["硝苯地平"]}}))
    cmekg.main(["--pickle", str(graph), "--output-dir", str(output), *extra])


CONVERTERS = {"ccks2019": convert_ccks, "cmekg": convert_cmekg}


@pytest.mark.parametrize("convert", CONVERTERS.values(), ids=list(CONVERTERS))
def test_a_converter_refuses_a_non_empty_output_folder(tmp_path, convert):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=rf"output folder {output} is not empty \(notes.txt\): --overwrite-output-dir"):
        convert(tmp_path, output)
    with pytest.raises(UserError, match=r"holds files this command did not write \(notes.txt\)"):
        convert(tmp_path, output, "--overwrite-output-dir")
    assert snapshot(output) == {"notes.txt": b"keep me"}


@pytest.mark.parametrize("convert", CONVERTERS.values(), ids=list(CONVERTERS))
def test_a_converter_replaces_its_output_only_when_complete(tmp_path, convert, monkeypatch):
    output = tmp_path / "out"
    convert(tmp_path, output)
    first = snapshot(output)

    # Another input, and a run that fails while writing (the disk fills up at the last file, README.md or
    # counts.json): the output folder keeps the previous files, all of them, and no half-written folder is left.
    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        convert(tmp_path, output, "--overwrite-output-dir", records=9)
    monkeypatch.undo()
    assert snapshot(output) == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    convert(tmp_path, output, "--overwrite-output-dir", records=9)
    second = snapshot(output)
    assert second.keys() == first.keys() and second != first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_span_schema_corpus_drops_and_counts_what_it_cannot_use(tmp_path):
    def span_line(record_id: str, *entities: tuple[int, int, str]) -> str:
        spans = [{"start": s, "end": e, "label": label} for s, e, label in entities]
        return json.dumps({"id": record_id, "text": "左乳结节，ER阳性。", "entities": spans}, ensure_ascii=False)

    good = [span_line("a", (0, 4, "Nodule")), span_line("b", (5, 7, "ER"), (3, 99, "ER")), span_line("c")]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join([*good, '{"id": "d", "text": "患者张三', '{"id": "e", "entities": []}']) + "\n")
    dev = tmp_path / "dev.jsonl"
    dev.write_text(good[0] + "\n")
    argv = ["--corpus=spans", f"--train_file={train}", f"--validation_file={dev}", f"--output_dir={tmp_path / 'o'}"]
    with pytest.raises(
        ConfigurationError, match=r"train.jsonl: 2 of 5 records dropped \(bad_json 1, missing_field 1\)"
    ):
        train_ner.main([*argv, *TINY])
    assert not (tmp_path / "o").exists()
    data_args = parse_arguments((train_ner.DataArguments,), [*argv[:3], "--max_bad_fraction=0.5"])[0]
    corpus, types, _ = train_ner.load_corpus(data_args, seed=0)
    assert corpus["train"]["id"] == ["a", "b", "c"] and types == ["ER", "Nodule"]
    assert corpus["train"][1]["entities"] == [{"start": 5, "end": 7, "label": "ER", "text": "ER"}]  # (3, 99) dropped
