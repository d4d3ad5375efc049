"""Simulated corpus files in every supported format, for the tests and the demo.

Every text here is invented from templates with a seeded random generator: there is no real patient text in the
project. The files reproduce what the real tools write: a UTF-8 BOM, CRLF line ends and a trailing empty line
(CCKS), entities without the ``overlap`` key (CCKS 2019 test, CCKS 2020), nested spans and one span with two labels
(CCKS 2020), and Label Studio JSON / JSON-MIN exports with a cancelled annotation, several annotations per task,
regions with several labels and a record longer than 5,000 characters.

``python -m datasets_scripts.fixtures OUTPUT_DIR`` writes them all (see :func:`write_fixtures`).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .labels import CCKS_TYPES
from .schema import Record, make_record

_CCKS_NAME = {t.code: t.name_zh for t in CCKS_TYPES}


class _Builder:
    """Concatenates text pieces and records the character span of each labelled one."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[tuple[int, int, str]] = []

    def add(self, text: str, *labels: str) -> int:
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        self.spans.extend((start, self.length, label) for label in labels)
        return start

    def label_since(self, start: int, label: str) -> None:
        """Label everything added since ``start`` (an outer, nesting entity)."""
        self.spans.append((start, self.length, label))

    def record(self, record_id: str) -> Record:
        return make_record(record_id, "".join(self.parts), self.spans)


# ----- breast-cancer records ----------------------------------------------------------------------------------------

_NODULES = ["左乳外上象限结节", "右乳内上象限低回声结节", "左乳乳晕后方实性结节", "双乳多发结节", "右乳外下象限肿块"]
_BIRADS = ["BI-RADS 3类", "BI-RADS 4a类", "BI-RADS 4b类", "BI-RADS 4c类", "BI-RADS 5类"]
_SURGERIES = [
    "左乳腺癌改良根治术",
    "右乳腺癌改良根治术",
    "左乳保乳术+前哨淋巴结活检术",
    "右乳单纯切除术+腋窝淋巴结清扫术",
]
_VASCULAR = ["脉管内见癌栓", "未见明确脉管癌栓及神经侵犯", "可见神经侵犯", "脉管癌栓（-）"]
_EDGES = ["各切缘均未见癌", "上切缘见癌残留", "基底切缘阴性", "切缘（-）"]
_REGIMENS = [
    "TC方案（多西他赛75mg/m² d1+环磷酰胺600mg/m² d1，q21d）化疗{n}周期",
    "EC方案（表柔比星90mg/m²+环磷酰胺600mg/m²，q21d）化疗{n}周期",
    "AC-T方案化疗：多柔比星60mg/m²+环磷酰胺600mg/m² q21d×4周期，序贯紫杉醇80mg/m² qw×12周",
    "TCbH方案（多西他赛+卡铂+曲妥珠单抗）新辅助化疗{n}周期",
    "卡培他滨1000mg/m² bid d1-14 q21d口服化疗{n}周期",
]
_RADIOTHERAPY = ["胸壁及锁骨上区放疗50Gy/25F", "全乳放疗50Gy/25次+瘤床加量10Gy/5次", "术后辅助放疗"]
_TARGETED = ["曲妥珠单抗靶向治疗1年", "曲妥珠单抗+帕妥珠单抗双靶向治疗", "吡咯替尼靶向治疗"]
_ENDOCRINE = ["来曲唑2.5mg qd内分泌治疗", "他莫昔芬10mg bid口服", "戈舍瑞林+依西美坦内分泌治疗", "阿那曲唑1mg qd口服"]


def _date(rng: random.Random) -> str:
    year, month, day = rng.randint(2015, 2023), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{year}年{month}月{day}日", f"{year}-{month:02d}-{day:02d}", f"{year}年{month}月"])


def _receptor(rng: random.Random, name: str) -> str:
    if rng.random() < 0.35:
        return rng.choice([f"{name}(-)", f"{name}（-）"])
    return rng.choice(
        [f"{name}(+,约{rng.randint(1, 9) * 10}%)", f"{name}（+，{rng.randint(1, 9) * 10}%）", f"{name}(+)"]
    )


def _breast_sentences(b: _Builder, rng: random.Random, long_course: bool) -> None:
    b.add(f"患者女，{rng.randint(28, 75)}岁，因“发现")
    b.add(rng.choice(_NODULES), "Nodule")
    b.add(f"{rng.randint(1, 12)}月”入院。")
    b.add(" ")  # a space kept in the text, as in real records
    b.add(_date(rng), "Time")
    b.add("乳腺彩超示：")
    b.add(rng.choice(_NODULES), "Nodule")
    b.add("，")
    b.add(rng.choice(_BIRADS), "BIRADS")
    b.add("。于")
    b.add(_date(rng), "Time")
    b.add("在全麻下行")
    b.add(rng.choice(_SURGERIES), "SurgeryName")
    b.add(f"。术后病理：浸润性导管癌，{rng.choice(['I', 'II', 'III'])}级，")
    b.add(rng.choice(_VASCULAR), "VascularNerveInvasion")
    b.add("，")
    b.add(rng.choice(_EDGES), "IncisalEdge")
    b.add("，")
    positive = rng.randint(0, 5)
    b.add(
        f"腋窝淋巴结（{positive}/{rng.randint(positive + 8, 20)}）{'见癌转移' if positive else '未见转移'}",
        "LymphNodeDissection",
    )
    b.add("。免疫组化：")
    b.add(_receptor(rng, "ER"), "ER")
    b.add("，")
    b.add(_receptor(rng, "PR"), "PR")
    b.add("，")
    b.add(rng.choice(["HER2(0)", "HER2(1+)", "HER2(2+)", "HER2(3+)", "HER-2（3+）"]), "HER2")
    b.add("，")
    b.add(rng.choice([f"Ki67({rng.randint(1, 9) * 10}%)", f"Ki-67(+,约{rng.randint(1, 9) * 5}%)"]), "Ki67")
    b.add("。病理分期：")
    b.add(f"{rng.choice(['p', 'yp', 'c'])}T{rng.choice(['1', '1c', '2', '3'])}N{rng.randint(0, 3)}M0", "TNM")
    b.add("。")
    for _ in range(rng.randint(8, 12) if long_course else 1):
        regimen = rng.choice(_REGIMENS).format(n=rng.randint(4, 8))
        if rng.random() < 0.2:
            # Nested: the time belongs to the chemotherapy mention, as annotators of the paper's corpus did.
            start = b.add(_date(rng), "Time")
            b.add("起行" + regimen)
            b.label_since(start, "Chemotherapy")
            b.add("。")
        else:
            b.add("于")
            b.add(_date(rng), "Time")
            b.add("起行")
            b.add(regimen, "Chemotherapy")
            b.add("，过程顺利，未诉明显不适。")
        if long_course:
            b.add("期间复查血常规、肝肾功能未见明显异常，心电图示窦性心律，心脏彩超示左室射血分数正常。")
    if rng.random() < 0.7:
        b.add("后行")
        b.add(rng.choice(_RADIOTHERAPY), "Radiotherapy")
        b.add("。")
    if rng.random() < 0.5:
        b.add("并予")
        if rng.random() < 0.15:
            b.add("曲妥珠单抗联合紫杉醇治疗", "TargetedTherapy", "Chemotherapy")  # one span, two labels
        else:
            b.add(rng.choice(_TARGETED), "TargetedTherapy")
        b.add("。")
    if rng.random() < 0.6:
        b.add("目前")
        b.add(rng.choice(_ENDOCRINE), "EndocrineTherapy")
        b.add("。")
    b.add(rng.choice(["今为进一步治疗入院。", "现为复查入院。", "患者一般情况可，饮食睡眠可。"]))


def simulated_breast_cancer_records(count: int = 100, seed: int = 0, long_records: int = 1) -> list[Record]:
    """``count`` invented breast-cancer records in the span schema (ids ``"1"``...), the last ``long_records`` of
    them longer than 5,000 characters."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        b = _Builder()
        long_course = index >= count - long_records
        _breast_sentences(b, rng, long_course)
        while long_course and b.length <= 5000:
            b.add("随访：")
            b.add(_date(rng), "Time")
            b.add("复查乳腺及腋窝彩超未见明显异常，胸部CT未见转移征象，肿瘤标志物正常，继续")
            b.add(rng.choice(_ENDOCRINE), "EndocrineTherapy")
            b.add("。")
        records.append(b.record(str(index + 1)))
    return records


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
        b = _Builder()
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
    b = _Builder()
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


def main(argv: list[str] | None = None) -> None:
    """Write the simulated fixture files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path)
    args = parser.parse_args(argv)
    for path in write_fixtures(args.output_dir).values():
        print(path)


if __name__ == "__main__":
    main()
