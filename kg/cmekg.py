"""Import CMeKG (the Chinese Medical Knowledge Graph shipped by the ``pycmekg`` package) as typed triples.

``pycmekg`` stores the graph as a pickle, ``pyCMeKG/model/cmekg.pkl``: a ``dict`` subject -> ``dict`` predicate ->
``list[str]`` objects (27,403 subjects, 469 predicates, 967,409 triples). Unpickling can run arbitrary code, so the
file is read with :class:`RefusingUnpickler`, whose ``find_class`` refuses every global: a pickle made only of
dicts, lists and strings needs none, and anything else fails before a single object is built from it. The
package itself is never imported (its ``__init__`` loads the same file with plain ``pickle``); it is only located.

From the raw graph :func:`import_cmekg` keeps the predicates that link two medical concepts and drops the rest:

* **literal predicates** (:data:`LITERAL_PREDICATES`, :data:`LITERAL_PREFIXES`): attribute values rather than
  nodes — names in other scripts or aliases (英文名, 汉语拼音, 别称), free text (用法用量, 注意事项, 性状, the
  clinical-pathway fields 诊断依据_*, 手术_*, 术后住院_*), codes and numbers (ICD10, 规格, 分子量), enumerations
  (OTC类型, 药品类型, 传染性) and herbal-material descriptions (性味, 功效, 采收时间);
* **unlisted predicates**: anything in neither table (a new pycmekg release, or the long tail of one-off keys);
  they are counted and reported by name so that the tables can be extended deliberately;
* **noise objects**: empty strings, strings of symbols only, pure numbers ("1"), percentages ("0.6%") and strings
  longer than
``max_name_length`` characters (sentences, not names); also self-loops and duplicate triples. Names are
  cleaned first: tabs and line breaks become spaces, surrounding whitespace and stray quotes are removed.

Entity types are not stored in CMeKG, so they are inferred from the predicates an entity takes part in, using the
rule table :data:`LINK_PREDICATES`: each kept triple casts a vote for its subject's type and one for its object's
type (weight 1 for an unambiguous role, 0.5 for a weak hint such as "object of 适应症 is usually a Disease"). An
entity's type is the one with the largest total weight; ties go to the type listed first in :data:`TYPE_PRIORITY`
(rarer, more specific types first). Entities with no vote get :data:`OTHER_TYPE` — body parts, causes, drug
classes' super-categories and taxonomy nodes are real nodes of the graph but none of the paper's seven types.
CMeKG has no food or manufacturer relations, so ``Food`` and ``Producer`` never occur here; they come from a
separate lexicon (``data/kg/medical_entities.tsv``).

CLI::

    python -m clinical_ner_zh.kg.cmekg --output-dir outputs/cmekg [--pickle PATH] [--max-name-length 30]

writes ``triples.tsv``, ``entities.tsv`` (name, type) and ``counts.json`` (kept and dropped triples per reason,
entities per type, triples per relation) and prints a summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import os
import pickle
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from clinical_ner_zh.cli_errors import UserError, add_debug_flag, run_command
from clinical_ner_zh.cli_errors.output_folder import OVERWRITE_FLAG, check_output_folder, replacing_folder

from .io import Entity, Triple, write_entities, write_triples

logger = logging.getLogger(__name__)

__all__ = [
    "ENTITY_TYPES",
    "LINK_PREDICATES",
    "LITERAL_PREDICATES",
    "LITERAL_PREFIXES",
    "OTHER_TYPE",
    "TYPE_PRIORITY",
    "CMeKGFormatError",
    "CMeKGImport",
    "RefusingUnpickler",
    "TypeRule",
    "find_cmekg_pickle",
    "import_cmekg",
    "infer_entity_types",
    "load_cmekg",
    "load_restricted_pickle",
    "type_guess_report",
    "validate_cmekg",
]

# The seven entity types of the CBT-KG paper's knowledge graph (Xu et al. 2025).
ENTITY_TYPES = ("Check", "Department", "Disease", "Drug", "Food", "Producer", "Symptom")
OTHER_TYPE = "Other"
# Tie-break order: rarer, more specific types first, so that a tie between e.g. Check and Disease (相关疾病 links a
# check to diseases, 检查 a disease to checks) keeps the narrower reading.
TYPE_PRIORITY = ("Department", "Check", "Drug", "Disease", "Symptom", "Food", "Producer")

STRONG = 1.0
WEAK = 0.5


class TypeRule(NamedTuple):
    """Type votes cast by one triple of a predicate: ``(type, weight)`` for subject and object, or None."""

    subject: tuple[str, float] | None
    object: tuple[str, float] | None


def _rule(subject: str | None, obj: str | None, subject_weight: float = STRONG, object_weight: float = STRONG):
    return TypeRule(
        (subject, subject_weight) if subject else None,
        (obj, object_weight) if obj else None,
    )


# Predicates kept as links, with the type votes they cast. Checked against the data (pycmekg 0.2.5): subjects of
# 不良反应/成份/适应症/用法用量 are drugs; subjects of 常见症状/就诊科室/并发症 are diseases; 相关疾病 and 相关症状
# mostly hang off checks (静态视野检查 -> 青光眼). Weak votes mark roles whose fillers are mixed (适应症 and 主治
# list symptoms as well as diseases; 成份 lists herbs, foods and chemicals).
LINK_PREDICATES: dict[str, TypeRule] = {
    # drug -> ...
    "不良反应": _rule("Drug", "Symptom"),
    "成份": _rule("Drug", "Drug", object_weight=WEAK),
    "组成": _rule("Drug", "Drug", object_weight=WEAK),
    "适应症": _rule("Drug", "Disease", object_weight=WEAK),
    "适应证": _rule("Drug", "Disease", object_weight=WEAK),
    "主治": _rule("Drug", "Disease", WEAK, WEAK),
    "主治病症": _rule(None, "Disease", object_weight=WEAK),
    "功能主治": _rule("Drug", None),
    "用于": _rule("Drug", None),
    "分类": _rule("Drug", "Drug", WEAK, WEAK),
    "用途分类": _rule("Drug", "Drug", object_weight=WEAK),
    "商品名": _rule("Drug", "Drug"),
    "通用名": _rule("Drug", "Drug"),
    "药品名称": _rule("Drug", "Drug"),
    "药物相互作用": _rule("Drug", "Drug"),
    # disease -> ...
    "常见症状": _rule("Disease", "Symptom"),
    "主要症状": _rule("Disease", "Symptom"),
    "临床症状及体征": _rule("Disease", "Symptom"),
    "术后症状": _rule("Disease", "Symptom"),
    "用药后不良反应": _rule("Disease", "Symptom"),
    "药物治疗后症状": _rule("Disease", "Symptom"),
    "侵及周围组织转移的症状": _rule("Disease", "Symptom"),
    "侵及周围组织或转移的症状": _rule("Disease", "Symptom"),
    "病症": _rule(None, "Symptom", object_weight=WEAK),
    "相关药物": _rule("Disease", "Drug"),
    "药物治疗": _rule("Disease", "Drug"),
    "并发症": _rule("Disease", "Disease"),
    "鉴别诊断": _rule("Disease", "Disease"),
    "病理分型": _rule("Disease", "Disease"),
    "药物引起的并发症": _rule("Disease", None),
    "手术引起的并发症": _rule("Disease", None),
    "治疗引起的并发症": _rule("Disease", None),
    "就诊科室": _rule("Disease", "Department"),
    "所属科室": _rule(None, "Department"),
    "专科分类": _rule(None, "Department"),
    "检查": _rule("Disease", "Check"),
    "实验室检查": _rule("Disease", "Check"),
    "影像学检查": _rule("Disease", "Check"),
    "辅助检查": _rule("Disease", "Check"),
    "组织学检查": _rule("Disease", "Check"),
    "内窥镜检查": _rule("Disease", "Check"),
    "其他检查": _rule("Disease", "Check"),
    "筛查": _rule("Disease", "Check", object_weight=WEAK),
    "住院必检项目": _rule("Disease", "Check"),
    "术前准备_必检项目": _rule("Disease", "Check"),
    "辅助检查（属性描述：入院必检）": _rule("Disease", "Check"),
    "常见病因": _rule("Disease", None),
    "病因": _rule("Disease", None),
    "主要病因": _rule("Disease", None),
    "高危因素": _rule("Disease", None),
    "诱发因素": _rule("Disease", None),
    "治疗": _rule("Disease", None),
    "辅助治疗": _rule("Disease", None),
    "手术治疗": _rule("Disease", None),
    "化疗": _rule("Disease", None),
    "放射治疗": _rule("Disease", None),
    "放化疗治疗": _rule("Disease", None),
    "常见发病部位": _rule("Disease", None),
    "发病部位": _rule("Disease", None),
    "转移部位": _rule("Disease", None),
    "外侵部位": _rule("Disease", None),
    "禁忌证": _rule(None, "Disease", object_weight=WEAK),
    # check -> ...
    "相关疾病": _rule("Check", "Disease", WEAK, STRONG),
    "相关症状": _rule("Check", "Symptom", WEAK, STRONG),
    "所属分类": _rule("Check", None, WEAK),
    # hierarchy: both ends share a type but which one is unknown; no votes, the link still informs the embedding.
    "上位关系": _rule(None, None),
    "下位关系": _rule(None, None),
    # herbal taxonomy: the subject is a medicinal material, the objects are taxa.
    **{rank: _rule("Drug", None, WEAK) for rank in ("界", "门", "纲", "目", "科", "属", "种", "亚纲", "亚科", "亚目")},
}

LITERAL_PREDICATES = frozenset(
    {
        # names in other scripts, romanisations, aliases
        "英文名", "英文名称", "英文别名", "英文别称", "英文", "外文名", "汉语拼音", "拼音", "别称", "又称", "同义词",
        "其他名称", "中文学名", "中文名", "拉丁学名", "学名", "二名法", "中医病名", "名称",
        # free text: usage, cautions, descriptions
        "用法用量", "用量", "注意事项", "性状", "贮藏", "贮藏方式", "禁忌", "主要用药禁忌", "警示语", "制法",
        "服药方法", "服药时间", "主要配伍", "主要用药", "治疗方案", "选择治疗方案的依据", "出院标准", "进入路径标准",
        "标准住院时间", "病史", "预防", "传播途径", "预后状况", "遗传因素", "主要适用症", "主要适用", "方法", "作用",
        "采集加工", "执行标准",
        # codes, numbers, dates
        "ICD10", "ATC编码", "CAS号", "批准文号", "规格", "有效期", "分子量", "分子式", "化学式", "比重", "硬度",
        "解离程度",
        # enumerations (a handful of values shared by thousands of subjects)
        "OTC类型", "药品类型", "药品监管分级", "特殊药品", "是否处方药", "是否处方", "是否纳入医保", "是否进入医保",
        "运动员慎用", "传染性", "多发群体", "发病人群", "发病性别倾向", "多发地区", "阶段", "疾病分期", "疾病分类",
        "剂型", "类别", "种类", "转移方式",
        # herbal-material attributes
        "性味", "性味归经", "性", "味", "功效", "功用", "功能", "功效分类", "特殊主治", "毒性", "入药部位", "采收时间",
        "采收季节", "采收", "采集时间", "分布区域", "分布", "产地", "出处",
        # mineral attributes
        "颜色", "光泽", "透明度", "晶系", "条痕",
        # taxonomy ranks too sparse to help (a few subjects each)
        "亚门", "亚界", "超目", "总门", "亚属", "亚族", "亚种", "族",
    }
)  # fmt: skip

# Clinical-pathway fields: free-text diagnostic criteria and surgery/stay instructions (one key per disease).
LITERAL_PREFIXES = ("诊断依据_", "手术_", "术后住院_", "术前准备_")

_NUMBER = re.compile(r"^[\d\s.,，．·]+$")
_PERCENTAGE = re.compile(r"^[\d\s.,，．]+[%％]$")
_WHITESPACE_RUN = re.compile(r"[\t\r\n]+")
_WORD_CHARACTER = re.compile(r"\w")  # letters, digits and CJK characters
_STRAY_QUOTES = "\"'“”‘’"


class CMeKGFormatError(UserError, ValueError):
    """The CMeKG pickle does not hold a dict of dicts of lists of strings (the message names where)."""


class RefusedPickleError(UserError, pickle.UnpicklingError):
    """A pickle that references a global or is not a valid pickle; the message names the file."""


class RefusingUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global, so loading can never import or call anything.

    Plain containers and strings are built by opcodes that need no global; classes, functions (``os.system``),
    ``__reduce__`` payloads and the copyreg extension registry all go through :meth:`find_class` and fail there,
    before any object is constructed from them.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: this file may hold only dicts, lists and strings"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"refusing persistent id {pid!r}")


def load_restricted_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` with :class:`RefusingUnpickler`.

    Raises:
        RefusedPickleError: the file references a global (class, function) or is not a valid pickle; the
            message names the file.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return RefusingUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as error:
        raise RefusedPickleError(f"{path}: {error}") from None
    except (EOFError, ValueError, IndexError, KeyError, TypeError) as error:
        # A truncated or corrupt stream surfaces as one of these from the C unpickler.
        raise RefusedPickleError(f"{path}: not a valid pickle ({type(error).__name__}: {error})") from None


def find_cmekg_pickle() -> Path:
    """Locate ``pyCMeKG/model/cmekg.pkl`` in the installed ``pycmekg`` distribution without importing it.

    ``importlib.util.find_spec`` only finds the package; importing ``pyCMeKG`` would run its ``__init__``, which
    opens the same pickle with the unrestricted loader.

    Raises:
        FileNotFoundError: pycmekg is not installed, or the installed copy lacks the pickle.
    """
    spec = importlib.util.find_spec("pyCMeKG")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("CMeKG needs the optional package pycmekg: pip install 'clinical-ner-zh[kg]'")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model" / "cmekg.pkl"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"pycmekg is installed at {list(spec.submodule_search_locations)} but model/cmekg.pkl is missing"
    )


def validate_cmekg(graph: Any, source: str = "CMeKG") -> dict[str, dict[str, list[str]]]:
    """Check that ``graph`` is ``dict[str, dict[str, list[str]]]`` and return it unchanged.

    Raises:
        CMeKGFormatError: naming the first subject/predicate/object that breaks the structure.
    """
    if not isinstance(graph, dict):
        raise CMeKGFormatError(f"{source}: expected a dict subject -> dict, got {type(graph).__name__}")
    for subject, predicates in graph.items():
        if not isinstance(subject, str):
            raise CMeKGFormatError(f"{source}: subject {subject!r} is a {type(subject).__name__}, expected str")
        if not isinstance(predicates, dict):
            raise CMeKGFormatError(
                f"{source}: subject {subject!r} maps to a {type(predicates).__name__}, expected dict predicate -> list"
            )
        for predicate, objects in predicates.items():
            if not isinstance(predicate, str):
                raise CMeKGFormatError(f"{source}: subject {subject!r} has non-string predicate {predicate!r}")
            if not isinstance(objects, list):
                raise CMeKGFormatError(
                    f"{source}: {subject!r} -> {predicate!r} is a {type(objects).__name__}, expected list[str]"
                )
            for position, obj in enumerate(objects):
                if not isinstance(obj, str):
                    raise CMeKGFormatError(
                        f"{source}: {subject!r} -> {predicate!r}[{position}] is a {type(obj).__name__}, expected str"
                    )
    return graph


def load_cmekg(path: str | os.PathLike | None = None) -> dict[str, dict[str, list[str]]]:
    """Read and validate the CMeKG pickle (by default the one shipped by pycmekg), never executing code."""
    path = Path(path) if path is not None else find_cmekg_pickle()
    graph = validate_cmekg(load_restricted_pickle(path), source=str(path))
    logger.info("read %d CMeKG subjects from %s", len(graph), path)
    return graph


def _predicate_policy(predicate: str) -> str:
    """``"link"``, ``"literal_predicate"`` or ``"unlisted_predicate"``."""
    if predicate in LINK_PREDICATES:
        return "link"
    if predicate in LITERAL_PREDICATES or predicate.startswith(LITERAL_PREFIXES):
        return "literal_predicate"
    return "unlisted_predicate"


def _noise_reason(name: str, max_name_length: int) -> str | None:
    if not name:
        return "noise_empty"
    if not _WORD_CHARACTER.search(name):
        return "noise_symbols"
    if _PERCENTAGE.match(name):
        return "noise_percentage"
    if _NUMBER.match(name):
        return "noise_number"
    if len(name) > max_name_length:
        return "noise_too_long"
    return None


def _clean(name: str) -> str:
    # Tabs and line breaks cannot live in a TSV field; a few CMeKG strings carry them as stray whitespace. Some
    # names also keep a quote left over from the source's CSV ('"与女性生殖器官...').
    return _WHITESPACE_RUN.sub(" ", name).strip().strip(_STRAY_QUOTES).strip()


def infer_entity_types(
    triples: list[Triple], rules: Mapping[str, TypeRule] = LINK_PREDICATES
) -> tuple[dict[str, str], dict[str, Counter]]:
    """Infer one type per entity by weighted majority vote over the roles it plays (see module docstring).

    Returns:
        ``(types, votes)``: the chosen type per entity (``OTHER_TYPE`` without votes), and per entity the weight
        each ``(type, role)`` cast, a role being ``"subject of 不良反应"`` or ``"object of 常见症状"``.
    """
    votes: dict[str, Counter] = defaultdict(Counter)
    for head, relation, tail in triples:
        rule = rules.get(relation)
        if rule is None:
            continue
        if rule.subject is not None:
            votes[head][rule.subject[0], f"subject of {relation}"] += rule.subject[1]
        if rule.object is not None:
            votes[tail][rule.object[0], f"object of {relation}"] += rule.object[1]
    rank = {entity_type: position for position, entity_type in enumerate(TYPE_PRIORITY)}
    types: dict[str, str] = {}
    for head, _, tail in triples:
        for name in (head, tail):
            if name in types:
                continue
            tally = _per_type(votes.get(name, Counter()))
            if not tally:
                types[name] = OTHER_TYPE
            else:
                # Largest weight wins; among equal weights the earlier type in TYPE_PRIORITY.
                types[name] = min(tally, key=lambda t: (-tally[t], rank.get(t, len(rank))))
    return types, votes


def _per_type(votes: Counter) -> Counter:
    tally: Counter = Counter()
    for (entity_type, _), weight in votes.items():
        tally[entity_type] += weight
    return tally


def type_guess_report(types: Mapping[str, str], votes: Mapping[str, Counter]) -> dict[str, dict[str, int]]:
    """How the types of :func:`infer_entity_types` were guessed, to judge how far to trust them.

    Returns:
        ``names_per_type``: entities per type; ``decided_by``: entities whose votes named one type only
        (``"one type"``), several (``"majority"``: the heaviest won; ``"tie"``: TYPE_PRIORITY chose), or none
        (``"no vote"``, typed Other); ``rules``: per chosen type and role (``"Drug <- subject of 不良反应"``), the
        entities for which that role cast the most weight for the type they got. Each section sums to the number of
        entities.
    """
    decided_by: Counter = Counter()
    rules: Counter = Counter()
    for name, entity_type in types.items():
        name_votes = votes.get(name, Counter())
        tally = _per_type(name_votes)
        if not tally:
            decided_by["no vote"] += 1
            rules[f"{OTHER_TYPE} <- no vote"] += 1
            continue
        top = sorted(tally.values(), reverse=True)
        decided_by["one type" if len(top) == 1 else "tie" if top[0] == top[1] else "majority"] += 1
        # The role that cast the most weight for the chosen type (the first such role on a tie, in triple order).
        role = max((r for t, r in name_votes if t == entity_type), key=lambda r: name_votes[entity_type, r])
        rules[f"{entity_type} <- {role}"] += 1
    return {
        "names_per_type": dict(Counter(types.values()).most_common()),
        "decided_by": dict(decided_by.most_common()),
        "rules": dict(rules.most_common()),
    }


@dataclass
class CMeKGImport:
    """Result of :func:`import_cmekg`: kept triples, typed entities and the counts report."""

    triples: list[Triple]
    entities: list[Entity]
    counts: dict[str, Any] = field(default_factory=dict)


def import_cmekg(graph: Mapping[str, Mapping[str, list[str]]], *, max_name_length: int = 30) -> CMeKGImport:
    """Turn a validated CMeKG dict into link triples and a typed entity table.

    Args:
        graph: subject -> predicate -> objects, as returned by :func:`load_cmekg`.
        max_name_length: objects (and subjects) longer than this are sentences, not names, and are dropped.

    Returns:
        triples in graph order (deduplicated), entities sorted by name, and ``counts`` with ``triples_total``,
        ``triples_kept``, ``dropped`` (per reason), ``dropped_predicates`` (literal and unlisted, per predicate),
        ``relations`` (kept triples per relation), ``entities_total`` and ``entities_per_type``.
    """
    dropped: Counter = Counter()
    dropped_predicates: dict[str, Counter] = {"literal_predicate": Counter(), "unlisted_predicate": Counter()}
    seen: set[Triple] = set()
    triples: list[Triple] = []
    total = 0
    for raw_subject, predicates in graph.items():
        subject = _clean(raw_subject)
        subject_noise = _noise_reason(subject, max_name_length)
        for predicate, objects in predicates.items():
            total += len(objects)
            policy = _predicate_policy(predicate)
            if policy != "link":
                dropped[policy] += len(objects)
                dropped_predicates[policy][predicate] += len(objects)
                continue
            if subject_noise:
                dropped[f"subject_{subject_noise}"] += len(objects)
                continue
            for raw_object in objects:
                obj = _clean(raw_object)
                reason = _noise_reason(obj, max_name_length)
                if reason is None and obj == subject:
                    reason = "self_loop"
                triple = Triple(subject, predicate, obj)
                if reason is None and triple in seen:
                    reason = "duplicate"
                if reason is not None:
                    dropped[reason] += 1
                    continue
                seen.add(triple)
                triples.append(triple)
    types, votes = infer_entity_types(triples)
    entities = [Entity(name, types[name]) for name in sorted(types)]
    per_type = Counter(entity.type for entity in entities)
    counts = {
        "triples_total": total,
        "triples_kept": len(triples),
        "triples_dropped": total - len(triples),
        "dropped": dict(dropped.most_common()),
        "dropped_predicates": {reason: dict(c.most_common()) for reason, c in dropped_predicates.items()},
        "relations": dict(Counter(t.relation for t in triples).most_common()),
        "entities_total": len(entities),
        "entities_per_type": {t: per_type.get(t, 0) for t in (*ENTITY_TYPES, OTHER_TYPE)},
        "type_guess": type_guess_report(types, votes),
        "max_name_length": max_name_length,
    }
    assert counts["triples_kept"] + sum(dropped.values()) == total, "every triple is kept or dropped for one reason"
    logger.info("CMeKG: kept %d of %d triples, %d entities", len(triples), total, len(entities))
    return CMeKGImport(triples=triples, entities=entities, counts=counts)


OUTPUTS = ("triples.tsv", "entities.tsv", "counts.json")  # what the command writes in --output-dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Import CMeKG (from pycmekg) as triples.tsv + entities.tsv.")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--pickle", type=Path, default=None, help="cmekg.pkl to read (default: pycmekg's copy)")
    parser.add_argument("--max-name-length", type=int, default=30)
    parser.add_argument(
        OVERWRITE_FLAG, action="store_true", help="replace a non-empty output folder (one this command wrote)"
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    check_output_folder(args.output_dir, args.overwrite_output_dir, OUTPUTS)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    result = import_cmekg(load_cmekg(args.pickle), max_name_length=args.max_name_length)
    with replacing_folder(args.output_dir) as staging:
        write_triples(staging / "triples.tsv", result.triples)
        write_entities(staging / "entities.tsv", result.entities)
        counts_json = json.dumps(result.counts, ensure_ascii=False, indent=2) + "\n"
        (staging / "counts.json").write_text(counts_json, encoding="utf-8")

    counts = result.counts
    print(
        f"triples: {counts['triples_total']} read, {counts['triples_kept']} kept, {counts['triples_dropped']} dropped"
    )
    for reason, n in counts["dropped"].items():
        print(f"  dropped {reason:<22} {n:>9}")
    print(f"relations kept: {len(counts['relations'])}")
    unlisted = counts["dropped_predicates"]["unlisted_predicate"]
    if unlisted:
        print(f"unlisted predicates dropped: {len(unlisted)} (top: {', '.join(list(unlisted)[:10])})")
    total = counts["entities_total"]
    print(f"entities: {total} (types guessed from the predicates they take part in)")
    for entity_type, n in counts["entities_per_type"].items():
        print(f"  {entity_type:<11} {n:>8}  {n / total:6.1%}")
    guess = counts["type_guess"]
    print("  guessed from: " + ", ".join(f"{how} {n} ({n / total:.1%})" for how, n in guess["decided_by"].items()))
    print("  deciding rule (most entities first):")
    for rule, n in list(guess["rules"].items())[:15]:
        print(f"    {n:>8}  {n / total:6.1%}  {rule}")
    if len(guess["rules"]) > 15:
        print(f"    ... {len(guess['rules']) - 15} more rules in counts.json")
    print(f"wrote {args.output_dir}/triples.tsv, entities.tsv, counts.json")


if __name__ == "__main__":
    run_command(main)
