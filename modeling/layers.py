"""Sequence layers shared by the taggers: a padding-aware BiLSTM, a dilated gated CNN stack and attention fusions.

Each layer takes plain arguments (no config) and right-padded batches ``(batch, seq, features)`` with a boolean
``mask`` ``(batch, seq)`` that is true on real positions. Outputs at padded positions are zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reverse_within_length(inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each right-padded sequence within its own length; padding stays at the end.

    Applying it twice gives the input back.
    """
    positions = torch.arange(inputs.size(1), device=inputs.device).unsqueeze(0)
    # shape: (batch, seq), index of the element that lands at each position
    index = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
    return inputs.gather(1, index.unsqueeze(2).expand_as(inputs))


class BiLSTM(nn.Module):
    """Bidirectional LSTM (``num_layers`` stacked) that respects right padding without packing.

    ``pack_padded_sequence`` made the backward pass 50-100x slower on a 2-core CPU (2-12 s a batch). With right
    padding the forward direction never sees padding before a real step, and the backward direction runs over
    each sequence reversed within its own length, which gives the packed result exactly.
    Output size: ``2 * hidden_size``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"expected num_layers >= 1, got {num_layers}")
        self.hidden_size = hidden_size
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1)
        outputs = inputs
        for index, (forward_lstm, backward_lstm) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if index > 0:
                outputs = self.dropout(outputs)
            forward_out, _ = forward_lstm(outputs)
            backward_out, _ = backward_lstm(reverse_within_length(outputs, lengths))
            # shape: (batch, seq, 2 * hidden)
            outputs = torch.cat([forward_out, reverse_within_length(backward_out, lengths)], dim=2)
        return outputs * mask.unsqueeze(2).to(outputs.dtype)


class DilatedGatedConv(nn.Module):
    """Stack of dilated gated 1-D convolutions (DGCNN), Chen et al. 2025 eq. 5.

    Each layer computes ``Y = X + Conv1(X) * sigmoid(Conv2(X))``: a residual, a sigmoid gate, and a dilation that
    grows layer by layer (``dilations``, e.g. 1, 2, 4). Conv1 and Conv2 have the same shape but separate weights;
    they are held as one ``Conv1d`` with ``2 * dim`` output channels and split, which is the same computation in
    one call. Padded positions are zeroed before each convolution so padding never leaks into real positions.
    """

    def __init__(self, dim: int, dilations=(1, 2, 4), kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        dilations = list(dilations)
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"expected a non-empty list of dilations >= 1, got {dilations}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"expected an odd kernel_size >= 1 (to keep the sequence length), got {kernel_size}")
        self.dilations = dilations
        self.convs = nn.ModuleList(
            nn.Conv1d(dim, 2 * dim, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2) for d in dilations
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1).to(inputs.dtype)
        # shape: (batch, dim, seq), channels first for Conv1d
        hidden = inputs.transpose(1, 2) * keep
        for conv in self.convs:
            value, gate = conv(hidden).chunk(2, dim=1)
            hidden = (hidden + self.dropout(value) * torch.sigmoid(gate)) * keep
        return hidden.transpose(1, 2)


class CrossAttention(nn.Module):
    """Multi-head attention where ``queries`` attend to ``keys`` (keys also give the values)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"expected dim divisible by num_heads, got dim={dim}, num_heads={num_heads}")
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        # shape: (batch, heads, seq, dim / heads)
        return x.view(batch, seq, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # shape: (batch, 1, 1, seq) so every query ignores padded keys
        key_mask = mask[:, None, None, :]
        attended = F.scaled_dot_product_attention(
            self._heads(self.query(queries)),
            self._heads(self.key(keys)),
            self._heads(self.value(keys)),
            attn_mask=key_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, seq, _ = attended.shape
        return self.output(attended.transpose(1, 2).reshape(batch, seq, -1))


class _StreamFusion(nn.Module):
    """Two feature streams projected to ``dim``, each passed through its own multi-head attention (its own Q/K/V
    projections, the subclass's ``attend``), each result added to its stream with layer normalisation, the two concatenated
    and projected back to ``dim``. Subclasses choose what each stream attends to."""

    def __init__(self, dim_a: int, dim_b: int, dim: int):
        super().__init__()
        self.project_a = nn.Linear(dim_a, dim)
        self.project_b = nn.Linear(dim_b, dim)
        self.norm_a = nn.LayerNorm(dim)
        self.norm_b = nn.LayerNorm(dim)
        self.combine = nn.Linear(2 * dim, dim)
        self.output_size = dim

    def forward(self, stream_a: torch.Tensor, stream_b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a, b = self.project_a(stream_a), self.project_b(stream_b)
        attended_a, attended_b = self.attend(a, b, mask)
        fused_a = self.norm_a(a + attended_a)
        fused_b = self.norm_b(b + attended_b)
        return self.combine(torch.cat([fused_a, fused_b], dim=2)) * mask.unsqueeze(2).to(a.dtype)


class AttentionFusion(_StreamFusion):
    """Fuse two feature streams by multi-head cross-attention.

    Chen et al. 2025 project each stream to its own queries, keys and values and fuse the attended results without
    fixing the wiring; ours is: both streams are projected to ``dim``; stream A attends to stream B and B to A
    (separate attention modules, so each stream has its own Q/K/V projections); each result is added to its stream
    with layer normalisation; the two are concatenated and projected back to ``dim``.
    """

    def __init__(self, dim_a: int, dim_b: int, dim: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__(dim_a, dim_b, dim)
        self.a_to_b = CrossAttention(dim, num_heads, dropout)
        self.b_to_a = CrossAttention(dim, num_heads, dropout)

    def attend(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a_to_b(a, b, mask), self.b_to_a(b, a, mask)


class SelfAttentionFusion(_StreamFusion):
    """Fuse two feature streams after multi-head self-attention within each: Chen et al. 2025 Eq. 7 read literally,
    each stream's own queries, keys and values, so that the streams meet only where the results are combined
    (residual and layer normalisation per stream, concatenation, projection back to ``dim``, as
    :class:`AttentionFusion`)."""

    def __init__(self, dim_a: int, dim_b: int, dim: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__(dim_a, dim_b, dim)
        self.a_to_a = CrossAttention(dim, num_heads, dropout)
        self.b_to_b = CrossAttention(dim, num_heads, dropout)

    def attend(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a_to_a(a, a, mask), self.b_to_b(b, b, mask)
