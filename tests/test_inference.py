"""CPU inference paths of the clinical-ner pipeline and predict.py: length-sorted batches, oneDNN linear layers,
inference mode, and the int8 and bf16 options (issue 19, items 2 and 3)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.ao.nn.quantized import dynamic as quantized_dynamic
from transformers import pipeline
from transformers.utils import logging as hf_logging

from clinical_ner_zh.modeling import pipeline_clinical_ner
from clinical_ner_zh.modeling.pipeline_clinical_ner import ClinicalNerPipeline, _QuantizedConv1d, quantize_model

from .pipeline_helpers import char_tokenizer, hand_set_model, random_model

hf_logging.set_verbosity_error()

# Mixed lengths in an order that interleaves short and long records.
TEXTS = ["结节" * 3, "患者于年月日行左乳腺癌改良根治术" * 5, "药物", "化疗周期阳性" * 9, "时间", "左乳" * 30]


@pytest.fixture(scope="module")
def char_tok():
    return char_tokenizer()


def spans(entities):
    return [(e["start"], e["end"], e["entity_group"]) for e in entities]


def reference(model, tokenizer, texts, monkeypatch):
    """Each text alone (batch of one window list, no padding across texts) through aten's linear layers."""
    monkeypatch.setattr(
        pipeline_clinical_ner._OneDnnLinear, "applies", staticmethod(lambda device: False), raising=False
    )
    pipe = ClinicalNerPipeline(model=model, tokenizer=tokenizer, device=-1)
    results = [pipe(text, batch_size=1, max_length=24) for text in texts]
    monkeypatch.undo()
    return results


def test_texts_are_batched_by_length_and_come_back_in_input_order(char_tok, monkeypatch):
    model = random_model(char_tok)
    expected = reference(model, char_tok, TEXTS, monkeypatch)
    pipe = ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1)
    padding = []
    collate = pipe._collate

    def counting(items):
        batch = collate(items)
        padding.append(int((batch["attention_mask"] == 0).sum()))
        return batch

    monkeypatch.setattr(pipe, "_collate", counting)
    found = pipe(TEXTS, batch_size=2, max_length=24)
    # In input order, the same entities as each text alone; scores to rounding (another kernel, other batches).
    assert [spans(entities) for entities in found] == [spans(entities) for entities in expected]
    for ours, alone in zip(found, expected):
        assert [e["score"] for e in ours] == pytest.approx([e["score"] for e in alone], abs=1e-5)
    # Longest first: pairs of windows of nearly equal length (in input order, 2 + 21 + ... padded tokens).
    assert sum(padding) <= 4, padding


def test_linear_layers_run_on_onednn_under_inference_mode(char_tok, monkeypatch):
    if not pipeline_clinical_ner._OneDnnLinear.applies(torch.device("cpu")):
        pytest.skip("this torch build has no oneDNN linear kernel")
    model = random_model(char_tok)
    calls, modes = [], []
    onednn = torch.ops.mkldnn._linear_pointwise

    def spy(*args):
        calls.append(args[0].shape)
        return onednn(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
    model.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    pipe = ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1)
    pipe(TEXTS[1], max_length=24)
    linears = sum(isinstance(module, torch.nn.Linear) for module in model.modules())
    assert len(calls) >= linears > 0 and modes == [True] * len(modes) and modes
    # Outside the pipeline, training and autograd keep aten's linear.
    calls.clear()
    model(**char_tok(TEXTS[0], return_tensors="pt"))
    assert calls == []


def test_int8_quantizes_a_copy_of_the_linear_layers_and_convolutions(char_tok):
    model = random_model(char_tok)
    pipe = pipeline("clinical-ner", model=model, tokenizer=char_tok, quantize="int8")
    quantized = pipe.model
    assert quantized is not model
    kinds = {type(module) for module in quantized.modules()}
    assert quantized_dynamic.Linear in kinds
    # oneDNN's float32 LSTM is faster than torch's quantized one
    assert torch.nn.LSTM in kinds and quantized_dynamic.LSTM not in kinds
    # The DGCNN's convolutions run as int8 linear layers.
    assert torch.nn.Conv1d not in kinds
    assert sum(isinstance(m, _QuantizedConv1d) for m in quantized.modules()) == len(model.config.dgcnn_dilations)
    # Every float Linear left is one torch's dynamic quantization cannot take (attention's output projection).
    left = [name for name, module in quantized.named_modules() if type(module) is torch.nn.Linear]
    assert not left, left
    assert quantized.bert.encoder.layer[0].intermediate.dense.weight().dtype == torch.qint8
    assert all(p.dtype == torch.float32 for p in quantized.crf.parameters())
    # The model passed in is untouched.
    assert not any(isinstance(m, (quantized_dynamic.Linear, _QuantizedConv1d)) for m in model.modules())


@pytest.mark.parametrize(
    ("kernel_size", "dilation", "padding", "bias"),
    [(3, 1, 1, True), (3, 4, 4, True), (5, 2, 3, False), (1, 1, 0, True)],
)
def test_int8_convolution_computes_the_convolution(kernel_size, dilation, padding, bias):
    """Within int8's rounding of the float32 Conv1d, at every output position (the edges read the padding)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(16, 24, kernel_size, dilation=dilation, padding=padding, bias=bias)
    inputs = torch.randn(3, 16, 40)
    expected = conv(inputs).detach()
    got = _QuantizedConv1d(conv)(inputs)
    assert got.shape == expected.shape
    assert ((got - expected).norm(dim=1) / expected.norm(dim=1)).max() < 0.05


def test_int8_gives_the_fp32_entities_of_a_clear_cut_model(char_tok):
    model = hand_set_model(char_tok)
    text = "患者于时间行药物物化疗" * 6
    fp32 = ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1)(text, max_length=20)
    int8 = pipeline("clinical-ner", model=model, tokenizer=char_tok, quantize="int8")(text, max_length=20)
    assert spans(int8) == spans(fp32) and len(fp32) == 12
    assert [e["score"] for e in int8] == pytest.approx([e["score"] for e in fp32], abs=0.02)


@pytest.mark.parametrize("value", ["int4", "INT8", 8, "BF16", "bfloat16", "fp16"])
def test_a_bad_quantize_value_is_refused(char_tok, value):
    with pytest.raises(ValueError, match=r"quantize must be one of \['int8', 'bf16'\] or None, got"):
        pipeline("clinical-ner", model=hand_set_model(char_tok), tokenizer=char_tok, quantize=value)
    with pytest.raises(ValueError, match="quantize must be one of"):
        quantize_model(hand_set_model(char_tok), value)
    with pytest.raises(ValueError, match="quantize_model takes 'int8' only: bf16 needs no copy"):
        quantize_model(hand_set_model(char_tok), "bf16")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU that reports native bfloat16 (autocast runs on any CPU; only the speed differs)."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True}, raising=False)


def test_bf16_gives_the_fp32_entities_of_a_clear_cut_model(char_tok, bf16_cpu):
    model = hand_set_model(char_tok)
    text = "患者于时间行药物物化疗" * 6
    fp32 = ClinicalNerPipeline(model=model, tokenizer=char_tok, device=-1)(text, max_length=20)
    pipe = pipeline("clinical-ner", model=model, tokenizer=char_tok, quantize="bf16")
    bf16 = pipe(text, max_length=20)
    assert spans(bf16) == spans(fp32) and len(fp32) == 12
    assert [e["score"] for e in bf16] == pytest.approx([e["score"] for e in fp32], abs=0.02)
    # No copy: the model's own float32 weights, cast per operation by autocast.
    assert pipe.model is model and all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_runs_the_encoder_in_bfloat16_and_the_crf_in_float32(char_tok, bf16_cpu, monkeypatch):
    model = random_model(char_tok)
    logits, emissions = [], []
    model.register_forward_hook(lambda module, args, output: logits.append(output.logits.dtype))
    for name in ("decode", "marginals"):
        method = getattr(model.crf, name)

        def spy(scores, *args, method=method, **kwargs):
            emissions.append(scores.dtype)
            assert not torch.is_autocast_enabled("cpu")
            return method(scores, *args, **kwargs)

        monkeypatch.setattr(model.crf, name, spy)
    entities = pipeline("clinical-ner", model=model, tokenizer=char_tok, quantize="bf16")(TEXTS, max_length=24)
    assert len(entities) == len(TEXTS)
    assert logits and set(logits) == {torch.bfloat16}
    assert len(emissions) == 2 * len(logits) and set(emissions) == {torch.float32}
    # Outside the pipeline the model runs in float32 again.
    logits.clear()
    model(**char_tok(TEXTS[0], return_tensors="pt"))
    assert logits == [torch.float32]


def test_bf16_is_refused_on_a_cpu_without_native_bfloat16(char_tok, monkeypatch):
    capabilities = {"avx512_bf16": False, "amx_bf16": False, "cpu_name": "Old Xeon", "architecture": "x86_64"}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities, raising=False)
    message = r"quantize='bf16' needs a CPU with native bfloat16 arithmetic \(one of avx512_bf16, .*\); Old Xeon has"
    with pytest.raises(ValueError, match=message):
        pipeline("clinical-ner", model=hand_set_model(char_tok), tokenizer=char_tok, quantize="bf16")
    capabilities["amx_bf16"] = True
    pipeline_clinical_ner.check_bf16()


KEEP_FREED_MEMORY = """
import resource, sys, torch
from clinical_ner_zh.modeling.pipeline_clinical_ner import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    torch.ones(16 * 1024 * 1024)  # 64 MB, written and freed, as a batch's activations
before = faults()
for _ in range(10):
    torch.ones(16 * 1024 * 1024)
print(faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_lets_later_batches_reuse_the_pages_of_earlier_ones():
    """By default each 64 MB block is a fresh mapping whose 16,384 pages fault in again, zero-filled, every round;
    after keep_freed_memory the heap keeps the block, and later rounds fault in nothing (or one round's pages, when
    the heap has to grow once more)."""
    faults = {
        mode: int(subprocess.run([sys.executable, "-c", KEEP_FREED_MEMORY, mode], capture_output=True, text=True,
                                 check=True).stdout)
        for mode in ("default", "keep")
    }  # fmt: skip
    assert faults["default"] > 10 * 16_000 and faults["keep"] < 2 * 16_384, faults


def test_keep_freed_memory_changes_nothing_off_linux(monkeypatch):
    """predict.py calls it on every CPU run: on Windows or macOS it must return without touching a C library."""
    monkeypatch.setattr(pipeline_clinical_ner.sys, "platform", "win32")
    monkeypatch.setattr(pipeline_clinical_ner.ctypes, "CDLL", lambda *args: pytest.fail("loaded a C library"))
    assert pipeline_clinical_ner.keep_freed_memory() is False
