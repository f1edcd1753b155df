"""torch.optim-compatible optimizers over C update kernels.

    opt = affectfer.optim.SGD([
        {"params": model.fc.parameters(), "lr": 1e-2},        # head
        {"params": backbone_params},                          # uses the defaults below
    ], lr=1e-3, momentum=0.9, weight_decay=1e-4)
    loss.backward(); opt.step(); opt.zero_grad()

Each group is a dict: "params" (a list of leaf tensors) plus every hyper-parameter, which a
scheduler or the user may change between steps (group["lr"] = ...). `state[param]` holds that
parameter's buffers (momentum, Adam moments) as affectfer tensors.
"""
from __future__ import annotations

import numpy as np

from .. import _C
from ..tensor import _call, tensor, zeros


class Optimizer:
    """Base class: param groups, state, zero_grad, state_dict / load_state_dict."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list[dict] = []
        if isinstance(params, _C.TensorBase):
            raise TypeError("params must be an iterable of tensors or of dicts, not a single tensor "
                            "(wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        if not isinstance(group, dict):
            raise TypeError(f"a param group must be a dict, got {type(group).__name__}")
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, _C.TensorBase) else list(params)
        for p in group["params"]:
            if not isinstance(p, _C.TensorBase):
                raise TypeError(f"optimizer can only optimize affectfer tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf tensor (it was computed by an op); "
                                 "optimize the leaf it came from, or use .detach()")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            raise ValueError("a parameter group lists the same tensor twice")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (set_to_none=True, the torch default) or zero it in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.numpy()[...] = 0  # in place: whoever holds the gradient sees zeros

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p, grad, group, state):
        raise NotImplementedError

    # ---- checkpoints: the torch layout, parameters numbered in group order ----
    def state_dict(self) -> dict:
        index, groups, k = {}, [], 0
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                if id(p) not in index:
                    index[id(p)] = k
                    k += 1
                ids.append(index[id(p)])
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {key: (tensor(v.numpy()) if isinstance(v, _C.TensorBase) else v)
                                           for key, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for saved, group in zip(groups, self.param_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size "
                                 "of the optimizer's group")
        by_index = {i: p for saved, group in zip(groups, self.param_groups)
                    for i, p in zip(saved["params"], group["params"])}
        self.state = {}
        for i, entry in state_dict["state"].items():
            p = by_index[int(i)]
            restored = {}
            for key, v in entry.items():
                if isinstance(v, (_C.TensorBase, np.ndarray)):
                    arr = np.asarray(v)
                    if arr.shape != tuple(p.shape):
                        raise ValueError(f"state '{key}' of parameter {i} has shape {arr.shape}, the parameter "
                                         f"{tuple(p.shape)}")
                    v = tensor(arr, dtype=p.dtype)
                restored[key] = v
            self.state[p] = restored
        for saved, group in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = value

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, nesterov, weight decay (L2 added to the gradient)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p, grad, group, state):
        momentum = float(group["momentum"])
        inputs, is_new = [p, grad], 0
        if momentum != 0:
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = zeros(p.shape, dtype=p.dtype)
                is_new = 1
            inputs.append(state["momentum_buffer"])
        _call("sgd_step", inputs, (int(bool(group["nesterov"])), is_new),
              (float(group["lr"]), momentum, float(group["dampening"]), float(group["weight_decay"])))


class Adam(Optimizer):
    """torch.optim.Adam: bias-corrected moments, eps added after the sqrt, L2 weight decay added to
    the gradient, optional AMSGrad."""

    _decoupled = 0

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _update(self, p, grad, group, state):
        amsgrad = bool(group["amsgrad"])
        if not state:
            state["step"] = 0
            state["exp_avg"] = zeros(p.shape, dtype=p.dtype)
            state["exp_avg_sq"] = zeros(p.shape, dtype=p.dtype)
        if amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = zeros(p.shape, dtype=p.dtype)
        state["step"] = int(state["step"]) + 1
        inputs = [p, grad, state["exp_avg"], state["exp_avg_sq"]]
        if amsgrad:
            inputs.append(state["max_exp_avg_sq"])
        beta1, beta2 = group["betas"]
        _call("adam_step", inputs, (state["step"], int(amsgrad), self._decoupled),
              (float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"])))


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (param *= 1 - lr * weight_decay before the
    update; Loshchilov & Hutter 2019). Default weight_decay 1e-2 as in torch."""

    _decoupled = 1

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
