"""Knowledge-graph package: TSV I/O, the CMeKG import (safe unpickling, filtering, typing) and TransE/H/R."""

from __future__ import annotations

import os
import pickle
from collections import Counter

import pytest
import torch

from clinical_ner_zh.kg.cmekg import (
    OTHER_TYPE,
    CMeKGFormatError,
    import_cmekg,
    infer_entity_types,
    load_cmekg,
    load_restricted_pickle,
    validate_cmekg,
)
from clinical_ner_zh.kg.config import KgeConfig
from clinical_ner_zh.kg.evaluation import evaluate_link_prediction
from clinical_ner_zh.kg.export import load_kge, save_kge
from clinical_ner_zh.kg.graph import index_triples, split_triples
from clinical_ner_zh.kg.io import (
    Entity,
    KgFormatError,
    Triple,
    read_entities,
    read_triples,
    write_entities,
    write_triples,
)
from clinical_ner_zh.kg.training import train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These graphs are tiny: a second OpenMP thread only adds synchronisation (10x slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------------- TSV I/O


def test_triples_round_trip(tmp_path):
    triples = [Triple("阿司匹林", "不良反应", "恶心"), Triple("高血压", "常见症状", "头晕 目眩")]
    path = tmp_path / "triples.tsv"
    assert write_triples(path, triples) == 2
    assert read_triples(path) == triples


def test_entities_round_trip_keeps_order(tmp_path):
    entities = [Entity("血常规", "Check"), Entity("眼科", "Department"), Entity("高血压", "Disease")]
    path = tmp_path / "entities.tsv"
    write_entities(path, entities)
    assert read_entities(path) == entities


def test_reader_accepts_bom_and_blank_lines(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("\ufeffa\tr\tb\n\nb\tr\tc\n", encoding="utf-8")
    assert read_triples(path) == [Triple("a", "r", "b"), Triple("b", "r", "c")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\tr\tb\na\tr\n", r"t\.tsv:2: expected 3 tab-separated fields \(head, relation, tail\), got 2"),
        ("a\tr\tb\tc\n", r"t\.tsv:1: expected 3 .* got 4"),
        ("a\tr\tb\n\n a \t\tb\n", r"t\.tsv:3: empty relation field"),
    ],
)
def test_bad_triple_rows_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "t.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KgFormatError, match=message):
        read_triples(path)


def test_bad_entity_rows(tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("高血压\tDisease\n乏力\n", encoding="utf-8")
    with pytest.raises(KgFormatError, match=r"e\.tsv:2: expected 2 tab-separated fields \(name, type\), got 1"):
        read_entities(path)
    path.write_text("高血压\tDisease\n高血压\tSymptom\n", encoding="utf-8")
    with pytest.raises(KgFormatError, match=r"e\.tsv:2: entity '高血压' already listed on line 1"):
        read_entities(path)
    assert len(read_entities(path, allow_duplicates=True)) == 2


def test_writer_refuses_unreadable_fields(tmp_path):
    with pytest.raises(ValueError, match="no tab or line break"):
        write_triples(tmp_path / "t.tsv", [("a\tb", "r", "c")])
    with pytest.raises(ValueError, match="non-empty"):
        write_entities(tmp_path / "e.tsv", [("", "Drug")])


# ------------------------------------------------------------------------------------------- restricted unpickler


class _Exploit:
    """Unpickling this would call os.system if the loader resolved globals."""

    def __reduce__(self):
        return (os.system, ("touch should-not-exist",))


class _Plain:
    pass


@pytest.mark.parametrize("payload", [os.system, _Exploit(), _Plain(), {"subject": {"predicate": [_Plain()]}}])
def test_restricted_unpickler_refuses_any_global(tmp_path, monkeypatch, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    # Had anything been resolved and called, it would show here (and in the working directory).
    monkeypatch.chdir(tmp_path)
    called = []
    monkeypatch.setattr(os, "system", lambda *args: called.append(args))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pkl: refusing to load global"):
        load_restricted_pickle(path)
    assert not called
    assert not (tmp_path / "should-not-exist").exists()


def test_restricted_unpickler_reads_plain_graph(tmp_path):
    graph = {"阿司匹林": {"不良反应": ["恶心", "出血"]}, "高血压": {"常见症状": ["头晕"]}}
    path = tmp_path / "cmekg.pkl"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(graph, protocol=protocol))
        assert load_cmekg(path) == graph


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": {"b": ["c"]}})[:-3])
    with pytest.raises(pickle.UnpicklingError, match=r"cut\.pkl: (pickle data was truncated|not a valid pickle)"):
        load_restricted_pickle(path)


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (["a"], "expected a dict subject -> dict, got list"),
        ({"a": ["b"]}, "subject 'a' maps to a list"),
        ({"a": {"r": "b"}}, r"'a' -> 'r' is a str, expected list\[str\]"),
        ({"a": {"r": ["b", 3]}}, r"'a' -> 'r'\[1\] is a int, expected str"),
        ({1: {"r": ["b"]}}, "subject 1 is a int"),
    ],
)
def test_structure_errors(graph, message):
    with pytest.raises(CMeKGFormatError, match=message):
        validate_cmekg(graph, source="fixture")


# -------------------------------------------------------------------------------------------------- CMeKG import

SYNTHETIC_CMEKG = {
    "阿司匹林肠溶片": {
        "不良反应": ["恶心", "胃出血", "恶心"],
        "成份": ["阿司匹林"],
        "适应症": ["头痛", "发热"],
        "英文名": ["Aspirin Enteric-coated Tablets"],
        "用法用量": ["口服，一次1片"],
        "规格": ["0.6%", "100"],
    },
    "偏头痛": {
        "常见症状": ["头痛", "恶心", "畏光"],
        "就诊科室": ["神经内科"],
        "检查": ["脑电图"],
        "相关药物": ["阿司匹林肠溶片"],
        "常见病因": ["遗传因素" * 10],
        "ICD10": ["G43.9"],
        "奇怪的新键": ["x"],
    },
    "脑电图": {"相关疾病": ["偏头痛", "癫痫"], "相关症状": ["头痛"]},
    "感冒": {"常见症状": ["发热", "12"]},
}


def test_import_filters_and_counts():
    result = import_cmekg(SYNTHETIC_CMEKG, max_name_length=30)
    counts = result.counts
    assert counts["triples_total"] == 24
    assert counts["dropped"] == {
        "literal_predicate": 5,  # 英文名, 用法用量, 规格 x2, ICD10
        "duplicate": 1,
        "noise_too_long": 1,
        "unlisted_predicate": 1,
        "noise_number": 1,
    }
    assert counts["triples_kept"] == 15 == len(result.triples)
    assert counts["dropped_predicates"]["unlisted_predicate"] == {"奇怪的新键": 1}
    assert Triple("阿司匹林肠溶片", "不良反应", "恶心") in result.triples
    assert not any(t.relation in ("英文名", "规格", "ICD10") for t in result.triples)


def test_type_inference_majority_and_priority():
    result = import_cmekg(SYNTHETIC_CMEKG)
    types = dict(result.entities)
    assert types["阿司匹林肠溶片"] == "Drug"  # subject of 不良反应/成份/适应症, object of 相关药物
    assert types["偏头痛"] == "Disease"  # subject of 常见症状 (1.0 x3) beats object of 相关疾病 (1.0)
    assert types["恶心"] == "Symptom"  # object of 不良反应 and 常见症状
    assert types["头痛"] == "Symptom"  # Symptom 3.0 beats the weak Disease vote of 适应症 (0.5)
    assert types["神经内科"] == "Department"
    assert types["癫痫"] == "Disease"
    # 脑电图: object of 检查 (Check 1.0), subject of 相关疾病 and 相关症状 (Check 0.5 + 0.5).
    assert types["脑电图"] == "Check"
    assert types["阿司匹林"] == "Drug"  # the weak vote of 成份 is its only evidence
    assert result.counts["entities_per_type"]["Producer"] == 0
    # A tie is broken by TYPE_PRIORITY (Check before Disease).
    tie, _ = infer_entity_types([Triple("A", "检查", "X"), Triple("X", "并发症", "B")])
    assert tie["X"] == "Check"
    untyped, _ = infer_entity_types([Triple("A", "上位关系", "B")])
    assert untyped == {"A": OTHER_TYPE, "B": OTHER_TYPE}


def test_type_guess_report_counts_types_decisions_and_deciding_rules():
    from clinical_ner_zh.kg.cmekg import type_guess_report

    triples = [
        Triple("A", "不良反应", "X"),  # A Drug 1, X Symptom 1
        Triple("D", "常见症状", "X"),  # D Disease 1, X Symptom 1
        Triple("A", "适应症", "D"),  # A Drug 1, D Disease 0.5 (weak)
        Triple("C", "检查", "Y"),  # C Disease 1, Y Check 1
        Triple("Y", "并发症", "Z"),  # Y Disease 1 (ties with Check: TYPE_PRIORITY picks Check), Z Disease 1
        Triple("X", "并发症", "W"),  # X Disease 1 (Symptom 2 wins), W Disease 1
        Triple("P", "上位关系", "Q"),  # no votes: Other
    ]
    types, votes = infer_entity_types(triples)
    report = type_guess_report(types, votes)
    assert report["names_per_type"] == {"Disease": 4, "Other": 2, "Drug": 1, "Symptom": 1, "Check": 1}
    assert report["decided_by"] == {"one type": 5, "no vote": 2, "majority": 1, "tie": 1}
    assert report["rules"] == {
        "Disease <- object of 并发症": 2,  # Z, W
        "Other <- no vote": 2,
        "Drug <- subject of 不良反应": 1,  # A: 1.0 from 不良反应 and from 适应症, the first in triple order
        "Symptom <- object of 不良反应": 1,  # X
        "Disease <- subject of 常见症状": 1,  # D: 1.0 beats the weak 0.5 of 适应症
        "Disease <- subject of 检查": 1,  # C
        "Check <- object of 检查": 1,  # Y
    }
    assert import_cmekg(SYNTHETIC_CMEKG).counts["type_guess"]["names_per_type"]["Drug"] == 2


# ----------------------------------------------------------------------------------------------------- embeddings


def dictionary_graph(languages: int = 4, concepts: int = 30) -> list[Triple]:
    """Concepts named in several languages; relation ``gA->gB`` translates a name from language A to B.

    TransE represents it exactly on the unit sphere (entity = concept vector + language vector, orthogonal; the
    relation is the difference of the language vectors), and a held-out translation is implied by the others.
    """
    return [
        Triple(f"g{a}_c{i}", f"g{a}->g{b}", f"g{b}_c{i}")
        for a in range(languages)
        for b in range(languages)
        if a != b
        for i in range(concepts)
    ]


SMALL = dict(dim=16, epochs=100, batch_size=64, margin=1.0, learning_rate=0.02, valid_fraction=0.0, test_fraction=0.1)
SMALL.update(eval_triples=None, eval_every=0, progress=False)
RANDOM_MRR = 0.05  # 120 entities: a random ranking has filtered MRR of about 0.04


def test_split_keeps_held_out_entities_in_train():
    graph = index_triples(dictionary_graph())
    split = split_triples(graph.triples, 0.1, 0.1, seed=3)
    assert sum(part.shape[0] for part in split.values()) == graph.triples.shape[0]
    assert split["valid"].shape[0] == split["test"].shape[0] == 36
    train_entities = set(split["train"][:, [0, 2]].reshape(-1).tolist())
    train_relations = set(split["train"][:, 1].tolist())
    for name in ("valid", "test"):
        assert set(split[name][:, [0, 2]].reshape(-1).tolist()) <= train_entities
        assert set(split[name][:, 1].tolist()) <= train_relations
    again = split_triples(graph.triples, 0.1, 0.1, seed=3)
    assert torch.equal(again["test"], split["test"])


def test_transe_learns_known_structure():
    result = train(dictionary_graph(), model="transe", **SMALL)
    assert result.metrics["mrr"] > 0.8, result.metrics
    assert result.metrics["hits@10"] > 0.9
    # Bordes et al.: entities stay on the unit sphere.
    norms = result.model.entity.weight.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


@pytest.mark.parametrize("model", ["transh", "transr"])
def test_transh_and_transr_beat_random(model):
    result = train(dictionary_graph(), model=model, negative_sampling="uniform", **SMALL)
    assert result.metrics["mrr"] > 3 * RANDOM_MRR, result.metrics
    assert result.model.entity.weight.norm(dim=-1).max() <= 1 + 1e-5


def test_untrained_model_scores_like_random():
    """Guards the metric: ties count half, so a collapsed model cannot look perfect."""
    graph = index_triples(dictionary_graph())
    result = train(dictionary_graph(), model="transe", **{**SMALL, "epochs": 0})
    assert result.metrics["mrr"] < RANDOM_MRR * 2
    result.model.entity.weight.data.zero_()
    result.model.relation.weight.data.zero_()
    collapsed = evaluate_link_prediction(result.model, graph.triples[:20], graph.triples)
    assert collapsed["mrr"] < RANDOM_MRR


def test_resume_matches_uninterrupted_run(tmp_path):
    settings = dict(SMALL, epochs=6, valid_fraction=0.05, eval_every=2)
    straight = train(dictionary_graph(), model="transh", **settings)
    train(dictionary_graph(), model="transh", checkpoint_dir=tmp_path, **{**settings, "epochs": 3})
    resumed = train(dictionary_graph(), model="transh", checkpoint_dir=tmp_path, resume=True, **settings)
    assert resumed.epochs_completed == 6
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert resumed.metrics == straight.metrics
    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in straight.history]
    with pytest.raises(ValueError, match="dim=16 in checkpoint, 8 now"):
        train(dictionary_graph(), model="transh", checkpoint_dir=tmp_path, resume=True, **{**settings, "dim": 8})


@pytest.mark.parametrize(
    ("stop", "train_on"),
    [({"max_minutes": 1e-9}, {"max_minutes": None}), ({"target_mrr": 0.0}, {"target_mrr": 2.0})],
    ids=["time-budget", "target-mrr"],
)
def test_a_run_that_stopped_stays_stopped_on_resume(tmp_path, stop, train_on):
    """train_kge.py --resume run again after the run ended on its time budget or target trained one more epoch each
    time; raising the budget (or the target) trains on."""
    settings = dict(SMALL, epochs=4, valid_fraction=0.05, eval_every=1, checkpoint_dir=tmp_path)
    first = train(dictionary_graph(), model="transe", **settings, **stop)
    assert first.epochs_completed == 1
    again = train(dictionary_graph(), model="transe", resume=True, **settings, **stop)
    assert again.epochs_completed == 1 and len(again.history) == 1
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    assert train(dictionary_graph(), model="transe", resume=True, **settings, **train_on).epochs_completed == 4


def test_save_and_load_embeddings(tmp_path):
    triples = dictionary_graph(languages=2, concepts=10)
    result = train(triples, model="transr", **{**SMALL, "epochs": 2, "relation_dim": 8})
    types = {"g0_c0": "Drug"}
    save_kge(result, tmp_path, types)
    loaded = load_kge(tmp_path)
    assert [e.name for e in loaded.entities] == result.entity_names
    assert loaded.entities[0] == Entity("g0_c0", "Drug") and loaded.entities[1].type == "Other"
    assert loaded.entity_embeddings.shape == (20, 16)
    assert loaded.tensors["relation_embeddings"].shape == (2, 8)
    assert loaded.tensors["relation_matrices"].shape == (2, 8, 16)
    assert loaded.config["model"] == "transr" and "mrr" in loaded.config["metrics"]


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match=r"model must be one of .* got 'distmult'"):
        KgeConfig(model="distmult")
    with pytest.raises(ValueError, match="p_norm must be 1 or 2, got 3"):
        KgeConfig(p_norm=3)


def test_load_kge_reads_a_folder_in_the_saved_layout(tmp_path):
    """The file layout that train_kge.py has always written (embeddings, names, config) keeps loading."""
    from safetensors.torch import save_file

    embeddings = torch.arange(6, dtype=torch.float32).view(3, 2)
    save_file(
        {"entity_embeddings": embeddings, "relation_embeddings": torch.ones(1, 2)},
        tmp_path / "entity_embeddings.safetensors",
    )
    (tmp_path / "entities.tsv").write_text("乳腺癌\tDisease\n紫杉醇\tDrug\n脱发\tOther\n", encoding="utf-8")
    (tmp_path / "relations.tsv").write_text("不良反应\n", encoding="utf-8")
    (tmp_path / "kge_config.json").write_text('{"model": "transe", "dim": 2}\n', encoding="utf-8")
    loaded = load_kge(tmp_path)
    assert loaded.entities == [Entity("乳腺癌", "Disease"), Entity("紫杉醇", "Drug"), Entity("脱发", "Other")]
    assert torch.equal(loaded.entity_embeddings, embeddings)
    assert loaded.relation_names == ["不良反应"] and loaded.config == {"model": "transe", "dim": 2}


# ----------------------------------------------------------------------- filtered ranks and the popularity baseline

# A graph of five entities (0..4) and one relation, small enough to rank by hand.
TINY_TRAIN = [(0, 0, 2), (1, 0, 2), (3, 0, 2), (0, 0, 3), (1, 0, 4)]
TINY_TEST = [(3, 0, 4)]


def brute_force_ranks(distance, triples, known, num_entities):
    """Filtered ranks by enumeration: ``distance(side, head, relation, tail)``, ties counted half."""
    ranks = []
    for head, relation, tail in triples:
        for side in ("tail", "head"):
            target = tail if side == "tail" else head

            def triple(entity, side=side, head=head, relation=relation, tail=tail):
                return (head, relation, entity) if side == "tail" else (entity, relation, tail)

            target_distance = distance(side, *triple(target))
            better = ties = 0
            for entity in range(num_entities):
                if entity == target or triple(entity) in known:
                    continue
                candidate = distance(side, *triple(entity))
                better += candidate < target_distance
                ties += candidate == target_distance
            ranks.append(1 + better + ties / 2)
    return ranks


def metrics_of(ranks, num_triples):
    return {
        "mrr": sum(1 / rank for rank in ranks) / len(ranks),
        "hits@1": sum(rank <= 1 for rank in ranks) / len(ranks),
        "hits@3": sum(rank <= 3 for rank in ranks) / len(ranks),
        "hits@10": sum(rank <= 10 for rank in ranks) / len(ranks),
        "mean_rank": sum(ranks) / len(ranks),
        "num_triples": num_triples,
    }


def test_relation_popularity_baseline_by_hand():
    from clinical_ner_zh.kg.evaluation import relation_popularity_baseline

    train, test = torch.tensor(TINY_TRAIN), torch.tensor(TINY_TEST)
    metrics = relation_popularity_baseline(train, test, torch.cat([train, test]), 5, 1)
    # Tail of (3, r, ?), answer 4: tail counts 2:3, 3:1, 4:1; 2 is another known tail of (3, r), filtered; 3 ties
    # with 4 -> rank 1.5. Head of (?, r, 4), answer 3: head counts 0:2, 1:2, 3:1; 1 is another known head of
    # (r, 4), filtered; 0 is ahead -> rank 2.
    assert metrics == pytest.approx(
        {
            "mrr": (1 / 1.5 + 1 / 2) / 2,
            "hits@1": 0.0,
            "hits@3": 1.0,
            "hits@10": 1.0,
            "mean_rank": 1.75,
            "num_triples": 1,
        }
    )


def test_relation_popularity_baseline_equals_enumeration():
    from clinical_ner_zh.kg.evaluation import relation_popularity_baseline

    generator = torch.Generator().manual_seed(0)
    triples = torch.unique(torch.stack([torch.randint(12, (60,), generator=generator),
                                        torch.randint(3, (60,), generator=generator),
                                        torch.randint(12, (60,), generator=generator)], dim=1), dim=0)  # fmt: skip
    train, test = triples[:-15], triples[-15:]
    tails, heads = Counter(), Counter()
    for head, relation, tail in train.tolist():
        tails[relation, tail] += 1
        heads[head, relation] += 1

    def distance(side, head, relation, tail):
        return -(tails[relation, tail] if side == "tail" else heads[head, relation])

    known = set(map(tuple, triples.tolist()))
    ranks = brute_force_ranks(distance, test.tolist(), known, 12)
    assert any(rank % 1 for rank in ranks), "ties occurred"
    got = relation_popularity_baseline(train, test, triples, 12, 3, batch_size=4)
    assert got == pytest.approx(metrics_of(ranks, len(test)))


def test_filtered_evaluation_equals_enumeration():
    """TransE with small integer vectors: L1 distances are exact, so ties are real and must count half."""
    from clinical_ner_zh.kg.models import build_model

    generator = torch.Generator().manual_seed(1)
    triples = torch.tensor(TINY_TRAIN + TINY_TEST + [(2, 1, 0), (4, 1, 1), (3, 1, 3)])
    model = build_model(KgeConfig(dim=2), 5, 2)
    model.entity.weight.data = torch.randint(-2, 3, (5, 2), generator=generator).float()
    model.relation.weight.data = torch.randint(-1, 2, (2, 2), generator=generator).float()
    vectors, relations = model.entity.weight.tolist(), model.relation.weight.tolist()

    def distance(side, head, relation, tail):
        return sum(abs(h + r - t) for h, r, t in zip(vectors[head], relations[relation], vectors[tail]))

    known = set(map(tuple, triples.tolist()))
    ranks = brute_force_ranks(distance, triples.tolist(), known, 5)
    assert any(rank % 1 for rank in ranks) and min(ranks) == 1 < max(ranks), ranks
    got = evaluate_link_prediction(model, triples, triples, batch_size=2)
    assert got == pytest.approx(metrics_of(ranks, len(triples)))


def test_train_kge_prints_the_scores_beside_the_baseline_last(tmp_path, capsys):
    import json
    import re

    import train_kge

    triples = tmp_path / "triples.tsv"
    write_triples(triples, dictionary_graph(languages=3, concepts=10))
    output = tmp_path / "kge"
    train_kge.main([f"--triples={triples}", f"--output-dir={output}", "--dim=8", "--epochs=3", "--batch-size=32",
                    "--test-fraction=0.2", "--valid-fraction=0", "--no-progress"])  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    number = r"(\d\.\d{4})"
    found = re.fullmatch(
        rf"filtered MRR = {number}, Hits@10 = {number} \(relation-popularity baseline: MRR {number}, Hits@10 {number}\)",
        last,
    )
    assert found, last
    saved = json.loads((output / "kge_config.json").read_text(encoding="utf-8"))
    metrics, baseline = saved["metrics"], saved["relation_popularity_baseline"]
    assert [float(value) for value in found.groups()] == [
        round(metrics["mrr"], 4), round(metrics["hits@10"], 4), round(baseline["mrr"], 4), round(baseline["hits@10"], 4)
    ]  # fmt: skip
    assert baseline["num_triples"] == metrics["num_triples"] > 0


def test_transr_starts_from_transe_vectors(tmp_path):
    """Lin et al. 2015 start TransR from TransE: entity and relation vectors copied, M_r the identity."""
    transe = train(dictionary_graph(), model="transe", **{**SMALL, "epochs": 30})
    save_kge(transe, tmp_path / "transe")
    transr = train(dictionary_graph(), model="transr", init_from=tmp_path / "transe", **{**SMALL, "epochs": 0})
    torch.testing.assert_close(transr.model.entity.weight, transe.model.entity.weight)
    relations = transe.model.relation.weight
    assert torch.allclose(transr.model.relation.weight, relations / relations.norm(dim=-1, keepdim=True).clamp_min(1))
    assert transr.metrics["mrr"] > 0.3 > 3 * RANDOM_MRR  # ranks well before any TransR step
    with pytest.raises(ValueError, match="embeddings of other entities or relations"):
        train(dictionary_graph(languages=3), model="transr", init_from=tmp_path / "transe", **SMALL)
    with pytest.raises(ValueError, match=r"shape \(120, 16\) cannot start a table of shape \(120, 8\)"):
        train(dictionary_graph(), model="transr", init_from=tmp_path / "transe", **{**SMALL, "dim": 8})
    with pytest.raises(OSError):
        train(dictionary_graph(), model="transr", init_from=tmp_path / "missing", **SMALL)


def test_cpu_clock_budget_counts_the_process_cpu_time(monkeypatch):
    """On a shared machine the wall clock runs while other jobs compute: --clock cpu budgets the run's own time."""
    import kg.training

    ticks = iter(range(0, 10_000, 40))  # every call of the CPU clock: 40 s more
    monkeypatch.setattr(kg.training.time, "process_time", lambda: next(ticks))
    settings = dict(SMALL, epochs=5, max_minutes=1.0)
    assert train(dictionary_graph(), clock="cpu", **settings).epochs_completed == 2  # 40 s, then 80 s >= 60 s
    assert train(dictionary_graph(), clock="wall", **settings).epochs_completed == 5
    with pytest.raises(ValueError, match="clock must be 'wall' or 'cpu', got 'gpu'"):
        KgeConfig(clock="gpu")


def test_degree_negatives_draw_entities_in_proportion_to_their_weight():
    from clinical_ner_zh.kg.training import _corrupt

    batch = torch.tensor([[0, 0, 1], [1, 0, 0]])
    generator = torch.Generator().manual_seed(0)
    heads, tails = _corrupt(batch, 50, torch.tensor([0.5]), 4, generator, torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.equal(heads[:, 0], batch[:, 0]) and torch.equal(tails[:, 0], batch[:, 2])
    corrupted = torch.where(heads[:, 1:] != batch[:, :1], heads[:, 1:], tails[:, 1:])
    assert set(corrupted.unique().tolist()) == {2}, "only the entity with weight"
    assert (heads[:, 1:] == 2).any() and (tails[:, 1:] == 2).any(), "both sides corrupted"
    result = train(dictionary_graph(), model="transe", negative_entities="degree", **SMALL)
    assert result.metrics["mrr"] > 0.8, result.metrics


def test_train_kge_says_how_many_entities_its_type_table_types(tmp_path, capsys):
    """A type table of another graph (or with names spelt otherwise) typed every entity Other without a word."""
    import train_kge
    from clinical_ner_zh.cli_errors import UserError

    triples = tmp_path / "triples.tsv"
    write_triples(triples, dictionary_graph(languages=2, concepts=5))  # 10 entities: g0_c0 ... g1_c4
    types = tmp_path / "types.tsv"
    types.write_text("g0_c0\tDisease\ng1_c1\tDrug\n高血压\tDisease\n", encoding="utf-8")
    output = tmp_path / "kge"
    train_kge.main([f"--triples={triples}", f"--entities={types}", f"--output-dir={output}", "--dim=8",
                    "--epochs=1", "--no-progress"])  # fmt: skip
    assert capsys.readouterr().out.splitlines()[1] == (
        f"2 of 10 entities typed from {types} (the others: Other); 1 of its 3 names are not in the triples"
    )
    written = dict(line.split("\t") for line in (output / "entities.tsv").read_text(encoding="utf-8").splitlines())
    assert sorted(written.values()) == ["Disease", "Drug", *["Other"] * 8]
    types.write_text("高血压\tDisease\n头痛\tSymptom\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        train_kge.main([f"--triples={triples}", f"--entities={types}", f"--output-dir={tmp_path / 'other'}"])
    assert str(caught.value) == (
        f"--entities {types}: none of its 2 names is an entity of the triples (10 entities), so every entity would "
        "be typed Other: give the type table of this graph (names as in the triples)"
    )
    assert not (tmp_path / "other").exists()


def test_train_kge_refuses_a_missing_init_folder_before_clearing_the_output(tmp_path):
    import train_kge
    from clinical_ner_zh.cli_errors import UserError

    triples = tmp_path / "triples.tsv"
    write_triples(triples, dictionary_graph(languages=2, concepts=5))
    output = tmp_path / "kge"
    output.mkdir()
    (output / "kge_config.json").write_text("{}\n", encoding="utf-8")  # a previous run's folder
    with pytest.raises(UserError, match=r"--init-from .*transe: no entity_embeddings.safetensors"):
        train_kge.main([f"--triples={triples}", f"--output-dir={output}", "--overwrite-output-dir",
                        f"--init-from={tmp_path / 'transe'}", "--model=transr"])  # fmt: skip
    assert (output / "kge_config.json").read_text(encoding="utf-8") == "{}\n"
