"""Lazy row-wise Adam and Adagrad for sparse embedding tables."""

from __future__ import annotations

import math

import torch

__all__ = ["SparseRowOptimizer"]


class SparseRowOptimizer(torch.optim.Optimizer):
    """Adam or Adagrad for ``nn.Embedding(sparse=True)`` tables that updates only the rows a step touched.

    ``torch.optim.SparseAdam`` spends most of a CMeKG step in generic sparse-tensor indexing (``sparse_mask``);
    this does the same "lazy" update with one coalesce, ``index_select`` and ``index_add_`` per table, about 4x
    faster at batch 8192. Adam's bias correction uses the global step count, as ``SparseAdam`` does.
    """

    def __init__(
        self,
        params,
        lr: float,
        method: str = "adam",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if method not in ("adam", "adagrad"):
            raise ValueError(f"method must be 'adam' or 'adagrad', got {method!r}")
        super().__init__(params, {"lr": lr, "method": method, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise ValueError("SparseRowOptimizer expects sparse gradients (nn.Embedding(sparse=True))")
                grad = param.grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["second"] = torch.zeros_like(param)
                    if group["method"] == "adam":
                        state["first"] = torch.zeros_like(param)
                state["step"] += 1
                if group["method"] == "adagrad":
                    second = state["second"].index_select(0, rows).addcmul_(values, values)
                    state["second"].index_copy_(0, rows, second)
                    update = values / second.sqrt_().add_(group["eps"])
                    param.index_add_(0, rows, update, alpha=-group["lr"])
                    continue
                step = state["step"].item()
                first = state["first"].index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
                second = state["second"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
                state["first"].index_copy_(0, rows, first)
                state["second"].index_copy_(0, rows, second)
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                update = first / second.sqrt_().add_(group["eps"])
                param.index_add_(0, rows, update, alpha=-step_size)
