"""A linear-chain conditional random field, batch first.

Convention, stated once: ``transitions[i, j]`` is the score of moving from tag ``i`` to tag ``j`` (as in
pytorch-crf, so parameters can be copied between the two). ``start_transitions[j]`` scores a path that begins with
``j``, ``end_transitions[i]`` one that ends with ``i``.

Masks may be any boolean pattern: the positions where ``mask`` is true are packed to the left of each sequence
before the recursions run, so a model can hide special tokens ([CLS], [SEP]) or padding anywhere. The
likelihood needs at least one position on per sequence; decoding gives an empty path for a sequence with none.

Constraints (which tags may start, end or follow which, see ``clinical_ner_zh.modeling.tagging.allowed_transitions``) are stored
as non-persistent buffers and always applied when decoding and computing marginals; with
``constrain_training=True`` they also shape the likelihood, and a gold path that makes a forbidden move is a
``ValueError``. A forbidden move scores ``IMPOSSIBLE``, a large finite negative number, so log-sum-exp stays finite
and gradients stay defined.

This module imports torch only: it ships inside every model repository.
"""

from __future__ import annotations

import torch
from torch import nn

IMPOSSIBLE = -1e4


class ConditionalRandomField(nn.Module):
    """CRF over ``num_tags`` tags.

    Args:
        num_tags: number of tags.
        allowed_start, allowed_end: which tags may begin / end a sequence (``num_tags`` booleans), or ``None``.
        allowed_transitions: ``num_tags x num_tags`` booleans, ``[i][j]`` true when ``j`` may follow ``i``, or ``None``.
        constrain_training: apply the constraints in :meth:`forward` too, not only when decoding.
    """

    def __init__(
        self,
        num_tags: int,
        allowed_start=None,
        allowed_end=None,
        allowed_transitions=None,
        constrain_training: bool = False,
    ):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"expected num_tags >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.constrain_training = constrain_training
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        # Kept as Python lists too: tensors made here would live on the meta device when transformers builds
        # the model there, and the buffers must be refilled from real values afterwards.
        self._allowed = {
            "start_allowed": self._constraint(allowed_start, (num_tags,)).tolist(),
            "end_allowed": self._constraint(allowed_end, (num_tags,)).tolist(),
            "transition_allowed": self._constraint(allowed_transitions, (num_tags, num_tags)).tolist(),
        }
        for name, allowed in self._allowed.items():
            self.register_buffer(name, torch.tensor(allowed, dtype=torch.bool), persistent=False)
        self.reset_parameters()

    @staticmethod
    def _constraint(allowed, shape: tuple[int, ...]) -> torch.Tensor:
        if allowed is None:
            return torch.ones(shape, dtype=torch.bool, device="cpu")
        allowed = torch.as_tensor(allowed, dtype=torch.bool, device="cpu")
        if allowed.shape != shape:
            raise ValueError(f"expected a constraint of shape {shape}, got {tuple(allowed.shape)}")
        return allowed

    def reset_parameters(self) -> None:
        """Uniform in [-0.1, 0.1], as pytorch-crf does."""
        for parameter in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(parameter, -0.1, 0.1)

    def constraint_values(self) -> dict[str, torch.Tensor]:
        """The constraint buffers' values, for re-filling them after a model is materialised from the meta device
        (transformers creates non-persistent buffers empty and leaves them to ``_init_weights``)."""
        return {name: torch.tensor(allowed, dtype=torch.bool) for name, allowed in self._allowed.items()}

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrain_training={self.constrain_training}"

    # ------------------------------------------------------------------ public API

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood of ``tags`` over the batch.

        Args:
            emissions: ``(batch, seq, num_tags)`` scores.
            tags: ``(batch, seq)`` tag ids; values at masked-off positions are ignored.
            mask: ``(batch, seq)`` booleans, true where a tag is scored; defaults to all on.
        """
        emissions, original_mask = self._validate(emissions, mask)
        if tags.shape != original_mask.shape:
            raise ValueError(f"expected tags of shape {tuple(original_mask.shape)}, got {tuple(tags.shape)}")
        tags = tags.masked_fill(~original_mask, 0)
        if tags.min() < 0 or tags.max() >= self.num_tags:
            raise ValueError(
                f"expected tag ids in [0, {self.num_tags}) at unmasked positions, "
                f"got values in [{int(tags.min())}, {int(tags.max())}]"
            )
        emissions, mask, tags = self._pack(emissions, original_mask, tags)
        if self.constrain_training:
            self._check_gold_paths(tags, mask, original_mask)
        start, end, transitions = self._scores(self.constrain_training)
        # Padded steps repeat the last alpha, so the final column holds each sequence's last real step.
        alphas, log_scale = self._forward_scores(emissions, mask, start, transitions)
        log_z = torch.logsumexp(alphas[:, -1] + end, dim=1) + log_scale
        gold = self._path_score(emissions, tags, mask, start, end, transitions)
        return (log_z - gold).mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """Best tag path per sequence (Viterbi, constraints applied), one list per masked-on position."""
        emissions, mask = self._validate(emissions, mask, allow_empty=True)
        lengths = mask.sum(dim=1)
        # An empty sequence is decoded over dummy positions and given an empty path.
        emissions, mask = self._pack(emissions, mask | ~mask.any(dim=1, keepdim=True))
        start, end, transitions = self._scores(constrained=True)
        batch, seq, _ = emissions.shape
        # into[j, i]: the score of moving from tag i into tag j, rows contiguous for the reduction over i.
        into = transitions.t().contiguous()

        # Forward pass: the best score of a path ending in each tag, shape (batch, num_tags) per step. Which
        # previous tag gave it is not kept: the backtrace recomputes it for the one tag each path takes, a
        # (batch, num_tags) argmax per step instead of a (batch, num_tags, num_tags) one here, where max with
        # indices costs four times amax. Steps past a sequence's end are computed over padding and never read.
        steps = emissions.unbind(1)
        scores = [start + steps[0]]
        candidates = emissions.new_empty(batch, *into.shape)
        for t in range(1, seq):
            torch.add(scores[-1].unsqueeze(1), into, out=candidates)
            scores.append(candidates.amax(dim=2).add_(steps[t]))

        # Backtrace over the whole batch, from the last position. A sequence joins at its own last position with
        # its best final tag; what its column holds before that is trimmed below.
        last = mask.sum(dim=1) - 1
        final = (torch.stack(scores, dim=1)[torch.arange(batch, device=last.device), last] + end).argmax(dim=1)
        rows_ending_at = {}
        for row, position in enumerate(last.tolist()):
            rows_ending_at.setdefault(position, []).append(row)
        current = final
        path = []
        for t in range(seq - 1, -1, -1):
            if t in rows_ending_at:
                rows = torch.tensor(rows_ending_at[t], device=current.device)
                current = current.index_copy(0, rows, final[rows])
            path.append(current)
            if t:
                current = (scores[t - 1] + into.index_select(0, current)).argmax(dim=1)
        paths = torch.stack(path[::-1], dim=1).tolist()
        return [path[:length] for path, length in zip(paths, lengths.tolist())]

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position tag probabilities ``(batch, seq, num_tags)`` by forward-backward, constraints applied.

        Rows at masked-off positions are zero; every other row sums to 1.
        """
        emissions, original_mask = self._validate(emissions, mask, allow_empty=True)
        # An empty sequence is computed over dummy positions whose rows are then dropped.
        emissions, mask = self._pack(emissions, original_mask | ~original_mask.any(dim=1, keepdim=True))
        # exp(alpha + beta - log Z), with log Z = logsumexp over tags of alpha + beta at every position: the scales
        # dropped from alpha and beta cancel, and each row is a probability distribution by construction.
        packed = torch.softmax(self._forward_backward_scores(emissions, mask, *self._scores(True)), dim=2)
        packed = packed * mask.unsqueeze(2)
        # Unpack: the k-th masked-on position of a sequence receives the k-th packed row.
        probabilities = torch.zeros_like(packed)
        probabilities[original_mask] = packed[mask & original_mask.any(dim=1, keepdim=True)]
        return probabilities

    # ------------------------------------------------------------------ internals

    def _validate(
        self, emissions: torch.Tensor, mask: torch.Tensor | None, allow_empty: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(f"expected emissions of shape (batch, seq, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask is None:
            mask = torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"expected mask of shape {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.bool()
        if emissions.size(1) == 0 or not (allow_empty or mask.any(dim=1).all()):
            raise ValueError("every sequence needs at least one position where mask is on")
        # Scores stay in float32 even when the encoder runs in half precision.
        return emissions.float(), mask

    def _check_gold_paths(self, tags: torch.Tensor, mask: torch.Tensor, original_mask: torch.Tensor) -> None:
        """Raise ``ValueError`` at the first move of a gold path that the constraints forbid: trained with the
        constraints, it would score ``IMPOSSIBLE`` and show up only as a loss of about 1e4. ``tags`` and ``mask``
        are packed; the position named is in the caller's (unpacked) coordinates."""
        last = mask.sum(dim=1) - 1
        rows = torch.arange(tags.size(0), device=tags.device)
        # shape: (batch, seq), false where a tag may not begin the path, follow the previous tag, or end the path
        ok = torch.cat([self.start_allowed[tags[:, :1]], self.transition_allowed[tags[:, :-1], tags[:, 1:]]], dim=1)
        ok = ok | ~mask
        ok[rows, last] &= self.end_allowed[tags[rows, last]]
        if bool(ok.all()):
            return
        row, step = (~ok).nonzero()[0].tolist()
        position = int(original_mask[row].nonzero()[step])
        tag = int(tags[row, step])
        if step == 0 and not self.start_allowed[tag]:
            move = f"tag {tag} may not begin a path"
        elif step > 0 and not self.transition_allowed[tags[row, step - 1], tag]:
            move = f"tag {tag} may not follow tag {int(tags[row, step - 1])}"
        else:
            move = f"tag {tag} may not end a path"
        raise ValueError(
            f"expected gold tag paths that the CRF's constraints allow (constrain_training=True), got sequence {row} "
            f"at position {position}: {move}"
        )

    @staticmethod
    def _pack(emissions: torch.Tensor, mask: torch.Tensor, tags: torch.Tensor | None = None):
        """Move masked-on positions to the left of each sequence, preserving their order."""
        if bool(mask[:, 0].all()) and bool((mask[:, :-1] >= mask[:, 1:]).all()):
            return (emissions, mask) if tags is None else (emissions, mask, tags)
        # Stable sort: on positions (key 0) first, in their original order.
        order = (~mask).to(torch.int8).argsort(dim=1, stable=True)
        packed_mask = torch.arange(mask.size(1), device=mask.device) < mask.sum(dim=1, keepdim=True)
        emissions = emissions.gather(1, order.unsqueeze(2).expand_as(emissions))
        if tags is None:
            return emissions, packed_mask
        return emissions, packed_mask, tags.gather(1, order)

    def _scores(self, constrained: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start, end, transitions = self.start_transitions.float(), self.end_transitions.float(), self.transitions.float()
        if constrained:
            start = start.masked_fill(~self.start_allowed, IMPOSSIBLE)
            end = end.masked_fill(~self.end_allowed, IMPOSSIBLE)
            transitions = transitions.masked_fill(~self.transition_allowed, IMPOSSIBLE)
        return start, end, transitions

    @staticmethod
    def _path_score(emissions, tags, mask, start, end, transitions) -> torch.Tensor:
        """Score of the given tag paths, shape ``(batch,)``, computed without a loop over time."""
        on = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        score = start[tags[:, 0]] + (emitted * on).sum(dim=1)
        score = score + (transitions[tags[:, :-1], tags[:, 1:]] * on[:, 1:]).sum(dim=1)
        last_tags = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1)).squeeze(1)
        return score + end[last_tags]

    @staticmethod
    def _forward_scores(emissions, mask, start, transitions, exact=False) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward log-scores ``alpha``, rescaled at every step, and the log of the scale they lost.

        Unscaled, ``alpha`` grows by about one emission per token and reaches thousands on long windows, where
        float32 keeps only a few decimals and marginals drifted above 1, so each step starts from ``alpha`` minus
        its largest value. Returns ``(alphas, log_scale)``: ``alphas`` of shape ``(batch, seq, num_tags)`` (padded
        steps repeat the last value) and ``log_scale`` of shape ``(batch,)``, the sum of the shifts, so that the true
        forward score of each sequence's last step is ``alphas[:, -1] + log_scale[:, None]``.

        Each step is a matrix product (see :class:`_LogSumExp`); where one may have lost terms to underflow, the
        whole recursion is redone with ``logsumexp``.
        """
        log_sum = _LogSumExp(transitions, exact)
        alpha = start + emissions[:, 0]
        log_scale = emissions.new_zeros(emissions.size(0))
        alphas = [alpha]
        for emission, on in zip(emissions.unbind(1)[1:], mask.unbind(1)[1:]):
            # The shift is a constant of the step, so the gradient through it would be zero: it is left out.
            shift = alpha.detach().amax(dim=1, keepdim=True)
            step = log_sum(alpha - shift) + emission
            alpha = torch.where(on.unsqueeze(1), step, alpha)
            log_scale = log_scale + shift.squeeze(1) * on
            alphas.append(alpha)
        alphas = torch.stack(alphas, dim=1)
        if log_sum.lost_terms(alphas[:, 1:] - emissions[:, 1:], mask[:, 1:]):
            return ConditionalRandomField._forward_scores(emissions, mask, start, transitions, exact=True)
        return alphas, log_scale

    @staticmethod
    def _forward_backward_scores(emissions, mask, start, end, transitions, exact=False) -> torch.Tensor:
        """``alpha + beta`` at every position, shape ``(batch, seq, num_tags)``, each position's up to a constant
        (rescaled as in :meth:`_forward_scores`); rows past a sequence's end are meaningless. ``mask`` is packed.

        The backward scores of a sequence are the forward scores of the sequence reversed within its length, under
        the transposed transitions and starting from ``end``: ``gamma = beta + emission`` at each position. Both
        directions therefore run as one batched recursion, one matrix product per step for the two.
        """
        lengths = mask.sum(dim=1, keepdim=True)
        positions = torch.arange(emissions.size(1), device=emissions.device)
        # Reverses each sequence within its length; applied twice, it gives the positions back.
        flip = torch.where(positions < lengths, lengths - 1 - positions, positions).unsqueeze(2).expand_as(emissions)
        both = torch.stack([emissions, emissions.gather(1, flip)])  # shape: (2, batch, seq, num_tags)
        log_sum = _LogSumExp(torch.stack([transitions, transitions.t()]), exact)
        scores = torch.stack([start, end]).unsqueeze(1) + both[:, :, 0]
        steps = [scores]
        for emission in both.unbind(2)[1:]:
            scores = log_sum(scores - scores.amax(dim=2, keepdim=True)) + emission
            steps.append(scores)
        steps = torch.stack(steps, dim=2)
        if log_sum.lost_terms(steps[:, :, 1:] - both[:, :, 1:], mask[:, 1:]):
            return ConditionalRandomField._forward_backward_scores(emissions, mask, start, end, transitions, True)
        alphas, gammas = steps
        return alphas + gammas.gather(1, flip) - emissions


class _LogSumExp:
    """``log(sum_i exp(scores[b, i] + matrix[i, j]))`` for each ``b`` and ``j``, given ``scores`` whose largest entry
    per row is 0; or the same for each of a stack of matrices ``(n, num_tags, num_tags)`` and scores
    ``(n, batch, num_tags)``.

    By default one matrix product, ``exp(scores) @ exp(matrix)``, four times faster than ``logsumexp`` over a
    ``(batch, num_tags, num_tags)`` tensor. It is exact while each result is far above what float32 can hold:
    ``exp`` rounds terms below ``e^-103`` to 0, so a sum above ``e^-60`` has lost less than ``num_tags * e^-103``,
    far below its precision, but a tag that every live path reaches only through forbidden moves (``IMPOSSIBLE``,
    a weight of 0) or from a score more than about 100 below the best sums to almost nothing, and its log is then
    wrong. :meth:`lost_terms` says whether any result is that small; the caller then redoes the recursion with
    ``exact=True``, which is ``logsumexp``. A sum of 0 is held at the smallest normal float, so that its log and
    the gradient stay finite until then.
    """

    FLOOR = -60.0

    def __init__(self, matrix: torch.Tensor, exact: bool):
        self.matrix, self.exact = matrix, exact
        if not exact:
            self.shift = matrix.detach().max()
            self.weights = (matrix - self.shift).exp()

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return torch.logsumexp(scores.unsqueeze(-1) + self.matrix.unsqueeze(-3), dim=-2)
        return (scores.exp() @ self.weights).clamp_min(torch.finfo(scores.dtype).tiny).log() + self.shift

    def lost_terms(self, results: torch.Tensor, mask: torch.Tensor) -> bool:
        """Whether any of ``results`` (the calls' outputs, where ``mask`` is on) may have lost terms."""
        return not self.exact and bool(((results < self.FLOOR + self.shift) & mask.unsqueeze(-1)).any())
