"""Throughput of the clinical-ner pipeline against transformers' token-classification pipeline, on the CPU and (where
one is found) on a GPU, and its peak memory on a long record.

    python benchmarks/pipeline_speed.py [--records 16] [--chars 2000] [--rounds 3] [--threads N] [--base]

Both pipelines run the same encoder size (a BERT of hidden 256, 4 layers, 4 heads by default: small, not tiny;
``--base``: 12 x 768, BERT-base) over the same simulated records of about 2,000 characters, with windows of 512
tokens ([CLS] and [SEP] included) overlapping by 128 tokens, 8 windows per batch, the same torch threads. transformers'
pipeline is used as its docs say for long texts: ``stride=128`` with ``aggregation_strategy="simple"`` (its tokenizer
cuts each text into windows of ``model_max_length`` tokens overlapping by ``stride``, and it joins the windows' tokens
by argmax of the logits, which is wrong for a CRF but is the baseline). Ours is timed as BERT-CRF (the same encoder
and a linear layer, plus the CRF's Viterbi and forward-backward) and with the full family-A head (BiLSTM + DGCNN +
attention fusion), and the full head once more with aten's linear kernel (the one transformers' pipeline runs),
which shows what the oneDNN kernel of ours brings and checks that our entities are the same with either kernel.
Rounds are interleaved and the best round of each counts, which makes the comparison robust to other load on the
machine. The process keeps freed memory for reuse as predict.py does (``keep_freed_memory``), for every pipeline
alike; ``--system-malloc`` leaves malloc at its defaults. Both sides run under torch's inference context of their pipeline (``no_grad`` for transformers',
``inference_mode`` for ours).

GPU: where ``torch.cuda.is_available()``, the same pipelines tag ``--gpu-records`` records on ``cuda:0`` (batch
``--gpu-batch``, float32) and the table gives records/s (the CBT-KG paper reports 30 records/s on an RTX 2080; target
> 300 with a base-size model); without a GPU it prints that none was found.

Peak memory: a fresh process per measurement tags one record of 1,000 or 100,000 characters; the table shows the
growth of the process's peak RSS over its peak after loading and a warm-up call, and tracemalloc's peak of Python
allocations during the call.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENCODER = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
MAX_LENGTH = 512


def simulated_text(chars: int, seed: int) -> str:
    from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records

    pieces, total, index = [], 0, 0
    while total < chars:
        record = simulated_breast_cancer_records(count=1, seed=seed * 1000 + index, long_records=0)[0]["text"]
        pieces.append(record)
        total += len(record)
        index += 1
    return "".join(pieces)[:chars]


def build(folder: Path) -> None:
    """Save a char tokenizer and three models of the same encoder size under ``folder``."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from clinical_ner_zh.datasets_scripts import build_char_tokenizer
    from clinical_ner_zh.datasets_scripts.labels import BREAST_CANCER_CODES, class_of
    from clinical_ner_zh.modeling import ChCancerBertConfig, ChCancerBertForCrfTagging
    from clinical_ner_zh.modeling.pipeline_clinical_ner import save_for_hub
    from clinical_ner_zh.modeling.tagging import build_label_list

    tokenizer = build_char_tokenizer([simulated_text(50_000, seed=99)], model_max_length=MAX_LENGTH)
    labels = build_label_list(BREAST_CANCER_CODES, "BIO")
    common = dict(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_LENGTH, id2label=dict(enumerate(labels)), **ENCODER
    )
    torch.manual_seed(0)
    special = [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id]
    classes = {code: class_of(code) for code in BREAST_CANCER_CODES}
    for name, head in (("bert-crf", dict(use_bilstm=False, use_dgcnn=False)), ("full-head", {})):
        config = ChCancerBertConfig(**common, **head, special_token_ids=special, label_classes=classes)
        save_for_hub(ChCancerBertForCrfTagging(config).eval(), tokenizer, folder / name)
    baseline = BertForTokenClassification(BertConfig(**common)).eval()
    baseline.save_pretrained(folder / "token-classification")
    tokenizer.save_pretrained(folder / "token-classification")


#: Windows overlap by this many tokens on both sides.
STRIDE = 128
#: The pipelines timed: name -> (folder, whether ours runs linear layers on aten's kernel instead of oneDNN's).
PIPELINES = {
    "token-classification": ("token-classification", False),
    "bert-crf": ("bert-crf", False),
    "full-head": ("full-head", False),
    "full-head, aten linear": ("full-head", True),
}


def load(folder: Path, name: str, device: int | str = -1, batch_size: int = 8):
    from transformers import pipeline

    if name == "token-classification":
        return pipeline("token-classification", model=str(folder / name), device=device, aggregation_strategy="simple",
                        stride=STRIDE, batch_size=batch_size)  # fmt: skip
    return pipeline("clinical-ner", model=str(folder / name), trust_remote_code=True, device=device,
                    batch_size=batch_size, stride=STRIDE)  # fmt: skip


def timed(pipe, texts: list[str], aten_linear: bool):
    """Seconds to tag ``texts`` and the entities; ``aten_linear`` turns our oneDNN linear kernel off for the call."""
    import torch

    module = sys.modules[type(pipe).__module__]  # the pipeline file as loaded from the model folder
    onednn = getattr(module, "_OneDnnLinear", None)
    applies = onednn.applies if onednn is not None else None
    if aten_linear and onednn is not None:
        onednn.applies = staticmethod(lambda device: False)
    try:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        entities = pipe(texts)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start, entities
    finally:
        if onednn is not None:
            onednn.applies = applies


def spans(entities) -> list[list[tuple[int, int, str]]]:
    return [[(e["start"], e["end"], e["entity_group"]) for e in record] for record in entities]


def throughput(folder: Path, texts: list[str], rounds: int, device: int | str = -1, batch_size: int = 8):
    """Best seconds of each pipeline over interleaved rounds, and the entities of each."""
    loaded = {folder_name: load(folder, folder_name, device, batch_size) for folder_name, _ in PIPELINES.values()}
    for pipe in loaded.values():
        pipe(texts[:1])  # warm-up
    best = dict.fromkeys(PIPELINES, float("inf"))
    entities = {}
    for _ in range(rounds):
        for name, (folder_name, aten_linear) in PIPELINES.items():
            seconds, entities[name] = timed(loaded[folder_name], texts, aten_linear)
            best[name] = min(best[name], seconds)
    return best, entities


MEMORY_PROBE = """
import json, resource, sys, time, tracemalloc
import torch
if {threads}:
    torch.set_num_threads({threads})
sys.path.insert(0, {root!r})
from benchmarks.pipeline_speed import load, simulated_text
pipe = load(__import__("pathlib").Path({folder!r}), {name!r})
text = simulated_text({chars}, seed=7)
pipe(simulated_text(1000, seed=8))  # warm-up: allocator pools, lazy imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
entities = pipe(text)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
del entities
tracemalloc.start()  # a second call: tracemalloc slows allocation down, so it is not timed
entities = pipe(text)
python_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({{"rss_growth_mib": (after - before) / 1024, "rss_peak_mib": after / 1024,
                  "python_peak_mib": python_peak / 2**20, "seconds": seconds, "entities": len(entities)}}))
"""


def memory(folder: Path, name: str, chars: int, threads: int | None = None) -> dict[str, float]:
    code = MEMORY_PROBE.format(root=str(ROOT), folder=str(folder), name=name, chars=chars, threads=threads or 0)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def set_allocator(system_malloc: bool) -> str:
    """Memory as predict.py has it (``keep_freed_memory``: glibc keeps freed blocks for the next batch), for every
    pipeline of this process alike, unless ``system_malloc``; returns a line saying which."""
    from clinical_ner_zh.modeling.pipeline_clinical_ner import keep_freed_memory

    if system_malloc:
        return "malloc: the C library's defaults (--system-malloc)"
    if keep_freed_memory():
        return "malloc: freed blocks kept for reuse, as predict.py does (keep_freed_memory; --system-malloc: defaults)"
    return "malloc: the C library's defaults (not glibc: keep_freed_memory does nothing)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/clinical-ner-benchmark"))
    parser.add_argument("--base", action="store_true", help="a BERT-base-size encoder (12 x 768) instead")
    parser.add_argument("--no-memory", action="store_true", help="leave out the peak-memory table")
    parser.add_argument(
        "--system-malloc", action="store_true", help="leave malloc as it is (not as predict.py sets it)"
    )
    parser.add_argument("--gpu-records", type=int, default=256, help="records tagged on the GPU, when there is one")
    parser.add_argument("--gpu-batch", type=int, default=64, help="windows per batch on the GPU")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.base:
        ENCODER.update(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    build(args.folder)
    malloc = set_allocator(args.system_malloc)
    texts = [simulated_text(args.chars, seed=i) for i in range(args.records)]
    total = sum(len(t) for t in texts)
    print(f"encoder {ENCODER}, windows of {MAX_LENGTH} tokens overlapping by {STRIDE}, batch 8, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{args.records} records of {args.chars} characters, best of {args.rounds} interleaved rounds; {malloc}\n")
    best, entities = throughput(args.folder, texts, args.rounds)
    same = spans(entities["full-head"]) == spans(entities["full-head, aten linear"])
    reference = total / best["token-classification"]
    print(f"{'pipeline (CPU)':<50}{'chars/s':>10}{'vs baseline':>13}")
    labels = {
        "token-classification": "token-classification, BertForTokenClassification",
        "bert-crf": "clinical-ner, BERT-CRF",
        "full-head": "clinical-ner, BERT-DGCNN-BiLSTM-MHA-CRF",
        "full-head, aten linear": "  the same, aten's linear kernel",
    }
    for name, seconds in best.items():
        print(f"{labels[name]:<50}{total / seconds:>10.0f}{total / seconds / reference:>12.2f}x")
    print(f"full head: entities with oneDNN's and aten's linear kernels {'identical' if same else 'DIFFER'}")

    print()
    if not torch.cuda.is_available():
        print("GPU: no GPU found (torch.cuda.is_available() is False): records/s on a GPU not measured")
    else:
        gpu_texts = [simulated_text(args.chars, seed=i) for i in range(args.gpu_records)]
        best, _ = throughput(args.folder, gpu_texts, args.rounds, device=0, batch_size=args.gpu_batch)
        print(f"GPU {torch.cuda.get_device_name(0)}: {args.gpu_records} records of {args.chars} characters, "
              f"batch {args.gpu_batch}, float32 (CBT-KG paper: 30 records/s on an RTX 2080; target > 300)")  # fmt: skip
        print(f"{'pipeline (GPU)':<50}{'records/s':>10}")
        for name, seconds in best.items():
            if name != "full-head, aten linear":  # the same kernels on a GPU
                print(f"{labels[name]:<50}{args.gpu_records / seconds:>10.1f}")

    if args.no_memory:
        return
    print(f"\n{'one record (clinical-ner, BERT-CRF)':<36}{'RSS growth MiB':>16}{'Python peak MiB':>17}"
          f"{'entities':>10}{'seconds':>9}")  # fmt: skip
    for chars in (1_000, 10_000, 100_000):
        numbers = memory(args.folder, "bert-crf", chars, args.threads)
        print(f"{f'{chars:,} characters':<36}{numbers['rss_growth_mib']:>16.1f}{numbers['python_peak_mib']:>17.1f}"
              f"{numbers['entities']:>10}{numbers['seconds']:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
