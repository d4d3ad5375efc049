"""Simulated breast-cancer records for the demo and the benchmarks.

Every text here is invented from templates with a seeded random generator: there is no real patient text in the
project. The records look like the paper's corpus: long treatment histories (a record of more than 5,000
characters on request), nested entities (a date inside a chemotherapy mention) and one span with two labels.
``data/demo/breast_cancer_simulated.json``, the README demo's corpus, holds ``simulated_breast_cancer_records(120,
seed=7)`` as a Label Studio JSON export.
"""

from __future__ import annotations

import random

from .schema import Record, make_record


class RecordBuilder:
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


def _breast_sentences(b: RecordBuilder, rng: random.Random, long_course: bool) -> None:
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
        b = RecordBuilder()
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
