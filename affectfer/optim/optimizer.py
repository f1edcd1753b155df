"""torch.optim-compatible optimizers over C update kernels and flat arenas.

    opt = affectfer.optim.SGD([
        {"params": model.fc.parameters(), "lr": 1e-2},        # head
        {"params": backbone_params},                          # uses the defaults below
    ], lr=1e-3, momentum=0.9, weight_decay=1e-4)
    loss.backward(); opt.step(); opt.zero_grad()

Each group is a dict: "params" (a list of leaf tensors) plus every hyper-parameter, which a
scheduler or the user may change between steps (group["lr"] = ...). `state[param]` holds that
parameter's buffers (momentum, Adam moments) as affectfer tensors.

The optimizer packs its parameters into one flat arena per dtype, in group order
(affectfer.nn.utils.flatten_parameters), so each group's parameters of one dtype are one contiguous
segment, and their gradients one segment of the gradient arena that backward writes. A step is one
C call per run of consecutive parameters that have gradients (a whole segment unless some are
frozen: torch skips a parameter without gradient), with the run's moments packed the same way. It
falls back to one call per tensor where a run is not uniform - a gradient assigned from elsewhere,
parameters at different step counts, a tensor moved out of the arena - and both paths run the same
elementwise kernel with the same scalars, so the results are bitwise the same.
"""
from __future__ import annotations

import numpy as np

from .. import _C
from ..nn.utils import flatten_parameters, zero_grad_
from ..tensor import _call, tensor, zeros


def _runs_with_grad(params, first: int, stop: int):
    """Maximal runs [lo, hi) of at least two consecutive params[first:stop] that have a gradient:
    frozen parameters (no gradient, skipped as torch skips them) split a segment into runs."""
    lo = first
    for k in range(first, stop + 1):
        if k == stop or params[k].grad is None:
            if k - lo >= 2:
                yield lo, k
            lo = k + 1


class Optimizer:
    """Base class: param groups, state, arenas, zero_grad, state_dict / load_state_dict."""

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
            self._add_group(group)
        self._pack()

    def add_param_group(self, group: dict) -> None:
        """Add a group (torch's fine-tuning idiom: unfreeze a stage, give it its own lr); every
        parameter is packed again so that the new group is a segment of the arenas too."""
        self._add_group(group)
        self._pack()

    def _add_group(self, group: dict) -> None:
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

    def _pack(self) -> None:
        """One arena per dtype over every group's parameters, in group order; `_segments[g]` lists
        (arena, first, stop) per dtype for group g."""
        self.arenas = flatten_parameters(p for g in self.param_groups for p in g["params"])
        self._segments = [[] for _ in self.param_groups]
        self._moment_arenas: dict = {}
        for arena in self.arenas.values():
            where = {id(p): k for k, p in enumerate(arena.params)}
            for g, group in enumerate(self.param_groups):
                ks = [where[id(p)] for p in group["params"] if id(p) in where]
                if ks:
                    self._segments[g].append((arena, ks[0], ks[-1] + 1))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (set_to_none=True, the torch default) or zero it in place (one fill
        of each gradient arena): see affectfer.nn.utils.zero_grad_."""
        zero_grad_((p for g in self.param_groups for p in g["params"]), set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        for g, group in enumerate(self.param_groups):
            done = set()
            for arena, first, stop in self._segments[g]:
                for lo, hi in _runs_with_grad(arena.params, first, stop):
                    members = arena.params[lo:hi]
                    param, grad = arena.segment(lo, hi)
                    if _C.arena_status(members, param, grad) == _C.ARENA_INTACT and \
                            self._update(members, param, grad, group, (g, arena.dtype, lo, hi)):
                        done.update(id(p) for p in members)
            for p in group["params"]:
                if id(p) not in done and p.grad is not None:
                    self._update([p], p, p.grad, group, None)
        return loss

    def _update(self, params, param, grad, group, segment) -> bool:
        """Update `param` (one tensor, or the flat segment over `params`) from `grad`; the state
        of every member advances. Returns False, having changed nothing, when the members' states
        differ so that one call cannot serve them all (the caller then updates them one by one)."""
        raise NotImplementedError

    def _moment(self, params, key: str, segment):
        """State tensor `key` for params: the parameter's own (one tensor), or a flat arena whose
        slices are each member's state[key] (created zero where missing, packed when the members
        are not already the arena's)."""
        for p in params:
            state = self.state.setdefault(p, {})
            if state.get(key) is None:
                state[key] = zeros(p.shape, dtype=p.dtype, device=p.device)
        if segment is None:
            return self.state[params[0]][key]
        members = [self.state[p][key] for p in params]
        flat = self._moment_arenas.get((segment, key))
        if flat is None or _C.arena_status(members, flat, None) != _C.ARENA_INTACT:
            flat = _C.arena_pack(members)
            self._moment_arenas[(segment, key)] = flat
        return flat

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
                    state[index[id(p)]] = {key: (v.clone() if isinstance(v, _C.TensorBase) else v)
                                           for key, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state_dict(): the moments become fresh tensors (copies), which the next step
        packs into moment arenas."""
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
                    if tuple(v.shape) != tuple(p.shape):
                        raise ValueError(f"state '{key}' of parameter {i} has shape {tuple(v.shape)}, the parameter "
                                         f"{tuple(p.shape)}")
                    v = tensor(v, dtype=p.dtype)
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

    def _update(self, params, param, grad, group, segment):
        momentum = float(group["momentum"])
        inputs, is_new = [param, grad], 0
        if momentum != 0:
            fresh = [self.state.get(p, {}).get("momentum_buffer") is None for p in params]
            if any(fresh) and not all(fresh):
                return False
            is_new = int(fresh[0])
            inputs.append(self._moment(params, "momentum_buffer", segment))
        _call("sgd_step", inputs, (int(bool(group["nesterov"])), is_new),
              (float(group["lr"]), momentum, float(group["dampening"]), float(group["weight_decay"])))
        return True


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

    def _update(self, params, param, grad, group, segment):
        amsgrad = bool(group["amsgrad"])
        steps = {int(self.state.get(p, {}).get("step", 0)) for p in params}
        keys = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
        present = {all(key in self.state.get(p, {}) for key in keys) for p in params}
        if len(steps) > 1 or len(present) > 1:
            return False
        step = steps.pop() + 1
        inputs = [param, grad] + [self._moment(params, key, segment) for key in keys]
        for p in params:
            self.state[p]["step"] = step
        beta1, beta2 = group["betas"]
        _call("adam_step", inputs, (step, int(amsgrad), self._decoupled),
              (float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"])))
        return True


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (param *= 1 - lr * weight_decay before the
    update; Loshchilov & Hutter 2019). Default weight_decay 1e-2 as in torch."""

    _decoupled = 1

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
