"""BiLSTM, DGCNN and attention fusion: exact against references, and blind to padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clinical_ner_zh.modeling.layers import (
    AttentionFusion,
    BiLSTM,
    DilatedGatedConv,
    SelfAttentionFusion,
    reverse_within_length,
)

FUSIONS = (AttentionFusion, SelfAttentionFusion)


def padded_batch(seed=0, dim=6):
    torch.manual_seed(seed)
    lengths = torch.tensor([7, 3, 5, 1])
    inputs = torch.randn(4, 7, dim)
    mask = torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)
    return inputs, mask, lengths


def test_reverse_within_length_is_an_involution():
    inputs, _, lengths = padded_batch()
    reversed_ = reverse_within_length(inputs, lengths)
    torch.testing.assert_close(reversed_[1, :3], inputs[1, :3].flip(0))
    torch.testing.assert_close(reversed_[1, 3:], inputs[1, 3:])
    torch.testing.assert_close(reverse_within_length(reversed_, lengths), inputs)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bilstm_equals_packed_bidirectional_lstm(num_layers):
    inputs, mask, lengths = padded_batch()
    ours = BiLSTM(6, 5, num_layers=num_layers).eval()
    reference = nn.LSTM(6, 5, num_layers=num_layers, bidirectional=True, batch_first=True).eval()
    with torch.no_grad():
        for layer in range(num_layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(getattr(ours.forward_layers[layer], f"{name}_l0"))
                getattr(reference, f"{name}_l{layer}_reverse").copy_(getattr(ours.backward_layers[layer], f"{name}_l0"))
    packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=7)
    torch.testing.assert_close(ours(inputs, mask), expected, atol=1e-6, rtol=1e-5)


def layer_outputs_ignore_padding(layer, dim=6):
    """Real positions do not change when padding is added or its content changes."""
    layer.eval()
    inputs, mask, _ = padded_batch(dim=dim)
    output = layer(inputs, mask) if not isinstance(layer, FUSIONS) else layer(inputs, inputs * 2, mask)
    noisy = torch.where(mask.unsqueeze(2), inputs, torch.randn_like(inputs) * 100)
    longer = torch.cat([noisy, torch.randn(4, 3, dim)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], dim=1)
    if isinstance(layer, FUSIONS):
        again = layer(longer, torch.where(longer_mask.unsqueeze(2), longer * 2, longer), longer_mask)
    else:
        again = layer(longer, longer_mask)
    torch.testing.assert_close(again[:, :7][mask], output[mask], atol=1e-5, rtol=1e-5)
    assert again[~longer_mask].abs().max() == 0


def test_layers_ignore_padding():
    layer_outputs_ignore_padding(BiLSTM(6, 4, num_layers=2))
    layer_outputs_ignore_padding(DilatedGatedConv(6, dilations=[1, 2, 4], kernel_size=3))
    layer_outputs_ignore_padding(AttentionFusion(6, 6, 8, num_heads=2))
    layer_outputs_ignore_padding(SelfAttentionFusion(6, 6, 8, num_heads=2))


def reference_fusion(fusion, stream_a, stream_b, mask, attention_a, attention_b, keys_a, keys_b):
    """The fusion written with torch's nn.MultiheadAttention: each stream's queries attend to the keys and values
    given (the projected stream named by ``keys_a``/``keys_b``), then residual, norm, concatenation, projection."""
    projected = {"a": fusion.project_a(stream_a), "b": fusion.project_b(stream_b)}
    fused = []
    for query, attention, keys, norm in (
        ("a", attention_a, keys_a, fusion.norm_a),
        ("b", attention_b, keys_b, fusion.norm_b),
    ):
        reference = nn.MultiheadAttention(8, 2, batch_first=True).eval()
        with torch.no_grad():
            reference.in_proj_weight.copy_(
                torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
            )
            reference.in_proj_bias.copy_(torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]))
            reference.out_proj.weight.copy_(attention.output.weight)
            reference.out_proj.bias.copy_(attention.output.bias)
        attended, _ = reference(projected[query], projected[keys], projected[keys], key_padding_mask=~mask)
        fused.append(norm(projected[query] + attended))
    return fusion.combine(torch.cat(fused, dim=2)) * mask.unsqueeze(2)


def test_self_attention_fusion_attends_each_stream_to_itself_and_cross_attention_to_the_other():
    """Chen et al. Eq. 7 read literally (fusion="self_attention") against the cross-attention reading: the same
    weights give different outputs, each equal to its own reference."""
    stream_a, mask, _ = padded_batch(dim=6)
    stream_b = torch.randn(4, 7, 4)
    cross = AttentionFusion(6, 4, 8, num_heads=2).eval()
    self_ = SelfAttentionFusion(6, 4, 8, num_heads=2).eval()
    renamed = {"a_to_b": "a_to_a", "b_to_a": "b_to_b"}
    self_.load_state_dict(
        {renamed.get(k.split(".")[0], k.split(".")[0]) + k[k.index(".") :]: v for k, v in cross.state_dict().items()}
    )
    with torch.no_grad():
        got_cross, got_self = cross(stream_a, stream_b, mask), self_(stream_a, stream_b, mask)
        expected_cross = reference_fusion(cross, stream_a, stream_b, mask, cross.a_to_b, cross.b_to_a, "b", "a")
        expected_self = reference_fusion(self_, stream_a, stream_b, mask, self_.a_to_a, self_.b_to_b, "a", "b")
    torch.testing.assert_close(got_cross[mask], expected_cross[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_self[mask], expected_self[mask], atol=1e-5, rtol=1e-5)
    assert (got_self - got_cross)[mask].abs().max() > 1e-2


def test_dgcnn_layer_is_the_gated_residual_of_chen_et_al_eq_5():
    torch.manual_seed(0)
    layer = DilatedGatedConv(4, dilations=[2], kernel_size=3)
    x = torch.randn(1, 9, 4)
    conv = layer.convs[0]
    conv1 = nn.Conv1d(4, 4, 3, dilation=2, padding=2)
    conv2 = nn.Conv1d(4, 4, 3, dilation=2, padding=2)
    with torch.no_grad():
        conv1.weight.copy_(conv.weight[:4]), conv1.bias.copy_(conv.bias[:4])
        conv2.weight.copy_(conv.weight[4:]), conv2.bias.copy_(conv.bias[4:])
    channels_first = x.transpose(1, 2)
    expected = channels_first + conv1(channels_first) * torch.sigmoid(conv2(channels_first))
    torch.testing.assert_close(layer(x, torch.ones(1, 9, dtype=torch.bool)), expected.transpose(1, 2))


def test_dgcnn_receptive_field_grows_with_dilation():
    layer = DilatedGatedConv(2, dilations=[1, 2, 4], kernel_size=3).eval()
    x = torch.zeros(1, 40, 2, requires_grad=True)
    layer(x, torch.ones(1, 40, dtype=torch.bool))[0, 20].sum().backward()
    reached = (x.grad[0].abs().sum(1) > 0).nonzero().flatten()
    assert reached.min() == 20 - (1 + 2 + 4) and reached.max() == 20 + (1 + 2 + 4)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DilatedGatedConv(4, dilations=[]), "non-empty list of dilations"),
        (lambda: DilatedGatedConv(4, kernel_size=2), "odd kernel_size"),
        (lambda: AttentionFusion(4, 4, 6, num_heads=4), "divisible by num_heads"),
        (lambda: BiLSTM(4, 4, num_layers=0), "num_layers >= 1"),
    ],
)
def test_layer_arguments_are_validated(build, message):
    with pytest.raises(ValueError, match=message):
        build()
