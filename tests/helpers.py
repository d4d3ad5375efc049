"""What several test modules share: simulated corpus files in every supported format, with the quirks and the
broken annotations the readers must cope with; train_ner.py's tiny command line; predict.py run in this process; a
tiny family-B model with its lexicon and vocabulary.

The files reproduce what the real tools write: a UTF-8 BOM, CRLF line ends and a trailing empty line (CCKS), an
entity ending with a space, entities without the ``overlap`` key (CCKS 2019 test, CCKS 2020), nested spans and one
span with two labels (CCKS 2020), and Label Studio JSON / JSON-MIN exports with a cancelled annotation, several
annotations per task, regions with several labels and a record longer than 5,000 characters. Every text is
invented (``clinical_ner_zh.datasets_scripts.simulated`` for the breast-cancer records).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import torch

import predict
from clinical_ner_zh.cli_errors import run_command
from clinical_ner_zh.datasets_scripts.labels import CCKS_TYPES
from clinical_ner_zh.datasets_scripts.schema import Record
from clinical_ner_zh.datasets_scripts.simulated import RecordBuilder, simulated_breast_cancer_records
from clinical_ner_zh.modeling import ClinicalBertKgConfig, ClinicalBertKgForCrfTagging, TermLexicon
from clinical_ner_zh.modeling.tagging import build_label_list

from .conftest import TINY_BERT

_CCKS_NAME = {t.code: t.name_zh for t in CCKS_TYPES}


# ----- CCKS-style records -------------------------------------------------------------------------------------------

_DISEASES = ["直肠腺癌", "2型糖尿病", "高血压病", "胃窦低分化腺癌", "肺部感染", "结肠癌肝转移"]
_OPERATIONS = ["直肠癌根治术", "腹腔镜下胆囊切除术", "右半结肠切除术", "胃癌根治术（D2）"]
_DRUGS = ["奥沙利铂", "卡培他滨", "替吉奥", "5-氟尿嘧啶", "亚叶酸钙", "贝伐珠单抗"]
_IMAGING = ["胸部CT", "腹部彩超", "盆腔MRI", "PET-CT", "全腹增强CT"]
_LABTESTS = ["血常规", "CEA", "CA19-9", "肝功能", "白细胞计数", "血红蛋白"]
_ANATOMY = ["肝", "双肺", "腹腔", "盆腔", "胃窦", "左侧锁骨上淋巴结", "直肠"]


def simulated_ccks_records(count: int = 12, seed: int = 0, prefix: str = "sim") -> list[Record]:
    """Invented CCKS-style records with the six CCKS types; one drug mention ends with a space."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        b = RecordBuilder()
        b.add(f"患者{rng.randint(30, 80)}岁，因“")
        b.add(rng.choice(_DISEASES), "Disease")
        b.add("”于我院行")
        b.add(rng.choice(_OPERATIONS), "Operation")
        b.add("，术后予")
        b.add(rng.choice(_DRUGS) + (" " if index == 1 else ""), "Drug")  # entity ending with a space
        b.add(("" if index == 1 else " ") + "化疗。")
        b.add(rng.choice(_IMAGING), "ImagingExam")
        b.add("示")
        b.add(rng.choice(_ANATOMY), "Anatomy")
        b.add("未见明显异常，")
        b.add(rng.choice(_LABTESTS), "LabTest")
        b.add(f"{rng.uniform(1, 200):.1f}。\t复查HER2阴性，ＣＴ值正常。")
        records.append(b.record(f"{prefix}:{index + 1}"))
    return records


def ccks2020_records() -> list[Record]:
    """Records with CCKS 2020's overlaps: a nested span and one span carrying two labels."""
    b = RecordBuilder()
    b.add("患者行")
    start = b.add("胆囊", "Anatomy")
    b.add("切除术")
    b.label_since(start, "Operation")
    b.add("，既往")
    b.add("左眼白内障", "Disease", "Operation")
    b.add("病史。")
    return [b.record("2020:1"), *simulated_ccks_records(3, seed=7, prefix="2020")[1:]]


# ----- writers ------------------------------------------------------------------------------------------------------


def write_ccks(
    path: str | Path,
    records: list[Record],
    *,
    bom: bool = True,
    crlf: bool = True,
    trailing_empty_line: bool = True,
    overlap_key: bool = True,
) -> Path:
    """Write records as a CCKS JSON-lines file with Chinese label names, as the official files are written."""
    lines = []
    for record in records:
        entities = [
            {"label_type": _CCKS_NAME[e["label"]], "start_pos": e["start"], "end_pos": e["end"]}
            | ({"overlap": 0} if overlap_key else {})
            for e in record["entities"]
        ]
        lines.append(json.dumps({"originalText": record["text"], "entities": entities}, ensure_ascii=False))
    newline = "\r\n" if crlf else "\n"
    content = newline.join(lines) + (newline if trailing_empty_line else "")
    path = Path(path)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content.encode("utf-8"))
    return path


def _regions(record: Record) -> list[dict[str, Any]]:
    """Label Studio regions: entities sharing a span become one region with several labels."""
    regions: dict[tuple[int, int], dict[str, Any]] = {}
    for entity in record["entities"]:
        key = (entity["start"], entity["end"])
        region = regions.setdefault(key, {"start": key[0], "end": key[1], "text": entity["text"], "labels": []})
        region["labels"].append(entity["label"])
    return list(regions.values())


def _stamp(base: datetime, minutes: int) -> str:
    return (base + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _annotation(identifier: int, regions: list[dict[str, Any]], minutes: int, cancelled: bool = False) -> dict:
    base = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
    result = [
        {"id": f"r{identifier}-{n}", "from_name": "label", "to_name": "text", "type": "labels", "value": region}
        for n, region in enumerate(regions)
    ]
    return {
        "id": identifier,
        "completed_by": 1,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": _stamp(base, minutes),
        "updated_at": _stamp(base, minutes + 5),
        "lead_time": 42.0,
    }


def _annotation_variants(records: list[Record]) -> list[list[tuple[list[dict[str, Any]], int, bool]]]:
    """Per task, its annotations as (regions, minutes, cancelled); the newest not cancelled one is the truth.

    Every 5th task also has an older annotation missing a region; every 7th a newer cancelled one with a wrong
    region, so a reader that takes the newest or the first annotation without looking gets them wrong.
    """
    variants = []
    for index, record in enumerate(records):
        regions = _regions(record)
        annotations = [(regions, 60 + index, False)]
        if index % 5 == 0 and regions:
            annotations.insert(0, (regions[1:], index, False))
        if index % 7 == 0:
            wrong = [{"start": 0, "end": 2, "text": record["text"][:2], "labels": ["Nodule"]}]
            annotations.append((wrong, 600 + index, True))
        variants.append(annotations)
    return variants


def write_label_studio_json(path: str | Path, records: list[Record]) -> Path:
    """Write records as a Label Studio JSON export (task ids are the record ids)."""
    tasks, next_id = [], 1
    for record, variants in zip(records, _annotation_variants(records)):
        entries = []
        for regions, minutes, cancelled in variants:
            entries.append(_annotation(next_id, regions, minutes, cancelled))
            next_id += 1
        tasks.append(
            {"id": int(record["id"]), "data": {"text": record["text"]}, "annotations": entries, "predictions": []}
        )
    path = Path(path)
    path.write_text(json.dumps(tasks, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_label_studio_min(path: str | Path, records: list[Record]) -> Path:
    """Write records as a Label Studio JSON-MIN export: one flat row per (non-cancelled) annotation."""
    rows, next_id = [], 1
    for record, variants in zip(records, _annotation_variants(records)):
        for regions, minutes, cancelled in variants:
            if not cancelled:
                annotation = _annotation(next_id, regions, minutes)
                rows.append(
                    {"id": int(record["id"]), "text": record["text"], "label": regions, "annotator": 1}
                    | {key: annotation[key] for key in ("created_at", "updated_at", "lead_time")}
                    | {"annotation_id": next_id}
                )
            next_id += 1
    path = Path(path)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


FIXTURES: dict[str, Callable[[Path], Path]] = {
    "ccks2019_train.jsonl": lambda p: write_ccks(p, simulated_ccks_records(12, seed=1, prefix="ccks2019_train")),
    "ccks2019_test.jsonl": lambda p: write_ccks(
        p, simulated_ccks_records(4, seed=2, prefix="ccks2019_test"), overlap_key=False
    ),
    "ccks2020_train.jsonl": lambda p: write_ccks(p, ccks2020_records(), overlap_key=False, crlf=False),
    "breast_cancer.json": lambda p: write_label_studio_json(p, simulated_breast_cancer_records()),
    "breast_cancer_min.json": lambda p: write_label_studio_min(p, simulated_breast_cancer_records()),
}


def write_fixtures(output_dir: str | Path) -> dict[str, Path]:
    """Write every fixture file into ``output_dir``; returns name -> path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return {name: writer(output_dir / name) for name, writer in FIXTURES.items()}


# ----- train_ner.py command lines -----------------------------------------------------------------------------------

# A tiny model: the scripts' end-to-end runs take seconds. TINY is family A's (the default family); train_ner.py
# refuses its head options for family B.
TINY_ENCODER = [
    "--hidden_size=32", "--num_hidden_layers=1", "--num_attention_heads=2", "--intermediate_size=64",
    "--lstm_hidden_size=16",
]  # fmt: skip
TINY = [*TINY_ENCODER, "--fusion_num_heads=2", "--dgcnn_dilations", "1", "2"]


def ner_args(corpora, output_dir, *extra):
    """train_ner.py's arguments for a tiny run on the simulated breast-cancer export (``extra`` may name family B)."""
    tiny = TINY_ENCODER if "--family=clinicalbert-kg" in extra else TINY
    return [
        "--corpus=breast_cancer", f"--train_file={corpora['breast']}", f"--output_dir={output_dir}",
        "--max_length=64", "--stride=16", "--per_device_train_batch_size=8", "--logging_steps=2",
        "--encoder_learning_rate=1e-3", "--head_learning_rate=1e-3", *tiny, *extra,
    ]  # fmt: skip


# ----- predict.py -----------------------------------------------------------------------------------------------


def run_predict(model_dir, *args) -> int:
    """The exit status of predict.py, run in this process through its ``__main__`` wrapper."""
    with pytest.raises(SystemExit) as stopped:
        run_command(predict.main, [str(model_dir), *map(str, args), "--no-progress"])
    return stopped.value.code


# ----- family B: a tiny ClinicalBertKgForCrfTagging with its own lexicon and vocabulary -----------------------------

CATEGORIES = ["Disease", "Drug", "Check"]
NUM_ENTITIES = 6
HEAD = dict(
    kg_embedding_dim=8, kg_projection_size=8, position_embedding_size=4, category_embedding_size=4,
    lstm_hidden_size=8, num_kg_entities=NUM_ENTITIES, kg_categories=CATEGORIES,
)  # fmt: skip
PAD, CLS, SEP = 0, 2, 3
TEXT = "乳腺癌术后，HER2阳性，紫杉醇化疗。"
CHARS = "乳腺癌术后，阳性紫杉醇化疗。左右侧"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "her2", *CHARS]


def tiny_config(**overrides) -> ClinicalBertKgConfig:
    scheme = overrides.get("label_scheme", "BIOES")
    scheme = scheme if scheme in ("BIO", "BIOES") else "BIOES"  # an invalid scheme is the config's to reject
    labels = build_label_list(["Disease", "Drug"], scheme)
    fields = {**TINY_BERT, **HEAD, "id2label": dict(enumerate(labels)), "special_token_ids": [PAD, CLS, SEP]}
    return ClinicalBertKgConfig(**{**fields, **overrides})


def lexicon() -> TermLexicon:
    return TermLexicon(
        [("乳腺癌", "Disease", 0), ("HER2", "Check", 5), ("阳性", "Check"), ("紫杉醇", "Drug", 2), ("化疗", "Drug")],
        CATEGORIES,
    )


def tiny_model(seed: int = 0, **overrides) -> ClinicalBertKgForCrfTagging:
    torch.manual_seed(seed)
    model = ClinicalBertKgForCrfTagging(tiny_config(**overrides))
    model.set_lexicon(lexicon())
    return model.eval()
