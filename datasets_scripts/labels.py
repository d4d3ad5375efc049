"""Entity-type metadata of the corpora: short English codes, original names, and the breast-cancer classes.

Records store the English code (``"Drug"``), so that tag names such as ``"B-Drug"`` are ASCII and identical
across corpora; the readers accept the original names (Chinese for CCKS, the paper's English names or their
Chinese translations for Label Studio exports) and the codes themselves.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class EntityType:
    """One entity type: ``code`` is what records and tags use; the rest is documentation and input aliases."""

    code: str
    name: str
    name_zh: str
    entity_class: str | None = None
    aliases: tuple[str, ...] = ()


# CCKS 2019 Task 1 (Yidu-S4K) and CCKS 2020 share these six types, in the order of the official guidelines.
CCKS_TYPES: tuple[EntityType, ...] = (
    EntityType("Disease", "Disease and diagnosis", "疾病和诊断"),
    EntityType("ImagingExam", "Imaging examination", "影像检查"),
    EntityType("LabTest", "Laboratory test", "实验室检验"),
    EntityType("Operation", "Operation", "手术"),
    EntityType("Drug", "Drug", "药物"),
    EntityType("Anatomy", "Anatomical site", "解剖部位"),
)

# Breast-cancer EHR corpus of Chen et al. (JMIR Med Inform 2025), Table 2: 16 types in 4 classes.
BREAST_CANCER_CLASSES: tuple[str, ...] = ("Symptoms", "Tests", "Treatments", "Time")
BREAST_CANCER_TYPES: tuple[EntityType, ...] = (
    EntityType("Nodule", "Nodule", "结节", "Symptoms"),
    EntityType(
        "VascularNerveInvasion",
        "Vascular tumor thrombus and nerve invasion",
        "脉管癌栓及神经侵犯",
        "Tests",
        ("Vascular tumor thrombus", "Vascular tumour thrombus and nerve invasion"),
    ),
    EntityType("IncisalEdge", "Incisal edge", "切缘", "Tests", ("Resection margin",)),
    EntityType("LymphNodeDissection", "Lymph node dissection", "淋巴结清扫", "Tests"),
    EntityType("BIRADS", "Bi-RADS", "BI-RADS分级", "Tests", ("BI-RADS", "BIRADS")),
    EntityType("TNM", "TNM", "TNM分期", "Tests"),
    EntityType("ER", "ER", "雌激素受体", "Tests"),
    EntityType("PR", "PR", "孕激素受体", "Tests"),
    EntityType("HER2", "HER2", "人表皮生长因子受体2", "Tests", ("HER-2",)),
    EntityType("Ki67", "Ki67", "Ki67增殖指数", "Tests", ("Ki-67",)),
    EntityType("SurgeryName", "Surgery name", "手术名称", "Treatments", ("Surgery",)),
    EntityType("Chemotherapy", "Chemotherapy", "化疗", "Treatments"),
    EntityType("Radiotherapy", "Radiotherapy", "放疗", "Treatments"),
    EntityType("TargetedTherapy", "Targeted therapy", "靶向治疗", "Treatments"),
    EntityType("EndocrineTherapy", "Endocrine therapy", "内分泌治疗", "Treatments"),
    EntityType("Time", "Time", "时间", "Time"),
)

CCKS_CODES: tuple[str, ...] = tuple(t.code for t in CCKS_TYPES)
BREAST_CANCER_CODES: tuple[str, ...] = tuple(t.code for t in BREAST_CANCER_TYPES)

_BY_CODE = {t.code: t for t in (*CCKS_TYPES, *BREAST_CANCER_TYPES)}


def _normalise(name: str) -> str:
    # Annotators write "Surgery name", "surgery_name" or "SurgeryName": compare without case, space, "_" or "-".
    # A Chinese input method writes full-width letters, digits and hyphens ("ＥＲ", "Ki－67"): NFKC folds them.
    return "".join(ch for ch in unicodedata.normalize("NFKC", name).casefold() if ch not in " _-")


def alias_table(types: tuple[EntityType, ...]) -> dict[str, str]:
    """Map every accepted spelling of a type (code, names, aliases; normalised) to its code."""
    table: dict[str, str] = {}
    for entity_type in types:
        for alias in (entity_type.code, entity_type.name, entity_type.name_zh, *entity_type.aliases):
            table[_normalise(alias)] = entity_type.code
    return table


def to_code(name: str, table: dict[str, str]) -> str | None:
    """The code of ``name`` under ``table`` (from :func:`alias_table`), or ``None`` when it is unknown."""
    return table.get(_normalise(name))


def entity_type(code: str) -> EntityType:
    """Metadata of a code; raises ``KeyError`` naming the code when it is unknown."""
    try:
        return _BY_CODE[code]
    except KeyError:
        raise KeyError(f"unknown entity type code {code!r}") from None


def class_of(code: str) -> str:
    """The breast-cancer class (Symptoms, Tests, Treatments, Time) of an entity type code.

    Raises ``ValueError`` for a code that has no class (the CCKS types) or that is unknown.
    """
    entity_class = _BY_CODE.get(code, EntityType(code, "", "")).entity_class
    if entity_class is None:
        raise ValueError(f"entity type {code!r} has no class: expected one of {', '.join(BREAST_CANCER_CODES)}")
    return entity_class
