"""The optimisers a training run can name (`train.optimizer`): Adam, SGD and RMSprop, written out.

Each is torch.optim's algorithm with torch.optim's defaults, and on the CPU its exact arithmetic:
the operations of torch.optim's single-tensor implementation (the one it uses for CPU tensors),
in the same order, so a run is bit for bit the run torch.optim would give
(`tests/test_optim.py` compares every parameter after every step, for each optimiser).

Why not torch.optim itself: its `step` and `zero_grad` import `torch._dynamo` on first use
(for torch.compile's graph breaks), about 0.6 s of every training job's start-up on a 2-core
VM (docs/performance.md), for nothing gapbench uses. On a GPU torch.optim would use its
multi-tensor ("foreach") kernels; this loop launches a few kernels per parameter instead (not
measured; the GPU timings in docs/performance.md were taken with torch.optim, at b94c08b).

    Adam (Kingma & Ba 2015):  m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,
                              θ ← θ − lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)
    SGD:                      θ ← θ − lr g
    RMSprop (Tieleman & Hinton 2012, torch's form):  v ← α v + (1−α) g²,  θ ← θ − lr g / (√v + ε)
"""
from __future__ import annotations

import torch


class Optimizer:
    """The small interface the training loop uses: zero_grad(set_to_none=True) and step()."""

    def __init__(self, params, lr: float):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("the optimiser got no parameters to train")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.lr = float(lr)
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:  # as torch.optim does: cut the gradient from any graph, then zero it
                p.grad.detach_() if p.grad.grad_fn is not None else p.grad.requires_grad_(False)
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        for index, p in enumerate(self.params):
            if p.grad is not None:
                self._update(index, p, p.grad)

    def _update(self, index: int, p: torch.Tensor, grad: torch.Tensor) -> None:
        raise NotImplementedError

    def state_tensors(self) -> list[torch.Tensor]:
        """Everything `step_on_device` changes: the parameters and the per-parameter state, so a
        caller can keep a copy and put it back where an update is refused (gapbench/graphed.py)."""
        return list(self.params)

    @torch.no_grad()
    def step_on_device(self, count: torch.Tensor) -> None:
        """`step` with no read on the host, for a step captured as a CUDA graph: `count` is this
        update's number t as a 0-dim float64 tensor on the parameters' device (where `step`
        counts on the host, per parameter). The same algorithm; where t enters the arithmetic
        (Adam's bias corrections) it is computed on the device, so the rounding differs."""
        for index, p in enumerate(self.params):
            if p.grad is not None:
                self._update_on_device(index, p, p.grad, count)

    def _update_on_device(self, index: int, p: torch.Tensor, grad: torch.Tensor, count: torch.Tensor) -> None:
        self._update(index, p, grad)  # no dependence on t: the host form has no host read


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3):
        super().__init__(params, lr)

    def _update(self, index, p, grad):
        p.add_(grad, alpha=-self.lr)


class Adam(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.param_steps = [0] * len(self.params)  # per parameter, like torch: counts the steps it had a gradient
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def _update(self, index, p, grad):
        self.param_steps[index] += 1
        step = float(self.param_steps[index])
        exp_avg, exp_avg_sq = self.exp_avg[index], self.exp_avg_sq[index]
        exp_avg.lerp_(grad, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        step_size = self.lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
        p.addcdiv_(exp_avg, denom, value=-step_size)

    def state_tensors(self):
        return [*self.params, *self.exp_avg, *self.exp_avg_sq]

    def _update_on_device(self, index, p, grad, count):
        """torch.optim's capturable form of the same update (bias corrections as tensors):
        θ ← θ + m / (√v / (√(1−β2^t) · (−lr/(1−β1^t))) + ε / (−lr/(1−β1^t)))."""
        exp_avg, exp_avg_sq = self.exp_avg[index], self.exp_avg_sq[index]
        exp_avg.lerp_(grad, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        step_size_neg = -self.lr / (1 - self.beta1**count)
        bias_correction2_sqrt = (1 - self.beta2**count).sqrt()
        denom = (exp_avg_sq.sqrt() / (bias_correction2_sqrt * step_size_neg)).add_(self.eps / step_size_neg)
        p.addcdiv_(exp_avg, denom)


class RMSprop(Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr)
        self.alpha, self.eps = alpha, eps
        self.square_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def _update(self, index, p, grad):
        square_avg = self.square_avg[index]
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        p.addcdiv_(grad, square_avg.sqrt().add_(self.eps), value=-self.lr)

    def state_tensors(self):
        return [*self.params, *self.square_avg]


OPTIMIZERS = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop}
