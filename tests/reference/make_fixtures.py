"""Write the PyTorch/torchvision reference fixtures the parity tests read (tests/reference/data/*.npz).

Run from the repository root where numpy, torch and torchvision are installed (affectfer itself
is not needed):

    python tests/reference/make_fixtures.py            # every fixture
    python tests/reference/make_fixtures.py conv2d     # only some

Inputs come from fixed NumPy seeds and torch runs single-threaded with deterministic algorithms,
so rerunning rewrites byte-identical files with the same torch build (the zip entries carry no
timestamps). Another torch version or CPU may change the last bits of float outputs: the
committed files record the versions that made them, and tests/reference/test_fixtures.py
(when torch is importable) checks they still agree with the installed torch within tolerance.
One generator per test module. Where that module already lists its cases (conv2d, pool, optim,
cast, lr schedules) the generator reads them from it (`from_test`); elsewhere the cases live here
and the tests parametrize over the fixture's case names. Adding a parity case: add it, rerun
this script, commit the .npz."""
import ast
import io
import json
import os
import sys
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.reference import DATA, FULL_LIMIT, SEED, Summary, checksum, seeded_input, seeded_state_dict  # noqa: E402

GENERATORS = {}


def from_test(module, name):
    """A top-level constant of a test module (cases, configs), evaluated with only NumPy in scope so
    this script needs neither affectfer nor pytest: the test module stays the one list of cases."""
    path = os.path.join(ROOT, "tests", *module.split("/")) + ".py"
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return eval(compile(ast.Expression(node.value), path, "eval"), {"np": np})
    raise LookupError(f"{path} has no top-level {name}")


def generator(fn):
    GENERATORS[fn.__name__] = fn
    return fn


class Cases:
    """Collects `<case>/<what>` arrays: torch tensors converted, strings and dicts stored as text,
    big outputs summarised and big inputs stored as int8."""

    def __init__(self, blocks=2048):
        self.arrays, self.blocks = {}, blocks

    def add(self, case, **items):
        for what, v in items.items():
            if v is None:
                continue
            key = f"{case}/{what}"
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            if isinstance(v, dict):
                v = json.dumps(v, sort_keys=True)
            v = np.asarray(v)
            if v.dtype.kind in "fc" and v.size > FULL_LIMIT:
                for field, value in Summary.fields(v, self.blocks).items():
                    self.arrays[f"{key}:{field}"] = value
            else:
                assert key not in self.arrays, key
                self.arrays[key] = v


def draw(rng, shape, dtype=np.float64):
    """Standard-normal-like input; above FULL_LIMIT elements, multiples of 1/32 in [-4, 4] stored
    as int8 (exact in every float dtype). Returns (array, key suffix)."""
    if int(np.prod(shape)) > FULL_LIMIT:
        return rng.integers(-127, 128, shape).astype(np.int8), ":q32"
    return rng.standard_normal(shape).astype(dtype), ""


def add_input(cases, case, what, rng, shape, dtype=np.float64):
    """Draw an input, store it, return it as `dtype`."""
    a, suffix = draw(rng, shape, dtype)
    cases.arrays[f"{case}/{what}{suffix}"] = a
    return (a.astype(np.float64) / 32).astype(dtype) if suffix else a


# ---------------------------------------------------------------- ops
@generator
def softmax(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    for op in ("softmax", "log_softmax"):
        for shape, dim in [((4, 6), 1), ((2, 3, 4, 5), 1), ((2, 3, 4), 0)]:
            x, g = rng.standard_normal(shape), rng.standard_normal(shape)
            tx = torch.tensor(x, requires_grad=True)
            ty = getattr(torch, op)(tx, dim)
            ty.backward(torch.tensor(g))
            out.add(f"{op}-{'x'.join(map(str, shape))}-dim{dim}", op=op, dim=dim, x=x, g=g, y=ty, dx=tx.grad)
    return out


@generator
def conv2d(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    for i, (xs, ws, stride, padding, dilation, groups, has_bias) in enumerate(from_test("ops/test_conv2d", "CASES")):
        case = str(i)
        x = add_input(out, case, "x", rng, xs, np.float32)
        w = add_input(out, case, "w", rng, ws, np.float32)
        b = add_input(out, case, "b", rng, ws[0], np.float32) if has_bias else None
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b, requires_grad=True) if has_bias else None
        ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation, groups=groups)
        dy = add_input(out, case, "dy", rng, tuple(ty.shape), np.float32)
        ty.backward(torch.tensor(dy))
        out.add(case, ints=np.array([*stride, *padding, *dilation, groups]), y=ty, dx=tx.grad, dw=tw.grad,
                dbias=None if tb is None else tb.grad)
    return out


@generator
def matmul(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    for sa, sb in [((2, 3, 5), (2, 5, 4)), ((2, 3, 5), (5, 4)), ((2, 2, 3, 4), (2, 2, 4, 3)),
                   ((2, 1, 3, 5), (1, 3, 5, 4)), ((3, 5), (2, 5, 4)), ((2, 3, 3, 5), (1, 5, 4))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        ty = ta @ tb
        g = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(g))
        out.add(f"{'x'.join(map(str, sa))}@{'x'.join(map(str, sb))}", a=a, b=b, g=g, y=ty, da=ta.grad, db=tb.grad)
    return out


@generator
def linear(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    g = rng.standard_normal((2, 3, 4))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(g))
    out.add("bias", x=x, w=w, b=b, g=g, y=ty, dx=tx.grad, dw=tw.grad, dbias=tb.grad)
    return out


@generator
def shape(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    # every cast pair, from values that hit rounding, overflow, NaN/inf and truncation edges
    values, dtypes = from_test("ops/test_shape", "CAST_VALUES"), from_test("ops/test_shape", "DTYPES")
    ref64 = torch.tensor(values, dtype=torch.float64)
    casts = {"values": values}
    for src in dtypes:
        first = ref64.to(getattr(torch, src))
        casts[f"float64_to_{src}"] = first.double()
        for dst in dtypes:
            casts[f"{src}_to_{dst}"] = first.to(getattr(torch, dst)).double()
    out.add("cast", **casts)
    # a chain of views, split, cat and products, forward and backward
    a, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((5, 2, 4))
    g = rng.standard_normal(6)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    parts = torch.split(ta[1:, ::2].permute(2, 0, 1).reshape(5, -1), [1, 2, 0, 1], 1)
    ty = torch.cat([parts[1], tb.permute(0, 2, 1).reshape(5, 8)[:, 1:4] * parts[3][:, :1], parts[0]], 1).sum(dim=0)
    ty.backward(torch.tensor(g))
    out.add("chain", a=a, b=b, g=g, y=ty, da=ta.grad, db=tb.grad)
    return out


@generator
def reduce(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    for dims in [(0,), (1, 2), (0, 2)]:
        for keep in (False, True):
            for op in ("sum", "mean"):
                y = getattr(torch, op)(torch.from_numpy(x), dim=dims, keepdim=keep)
                out.add(f"{op}-dims{''.join(map(str, dims))}-keep{int(keep)}", op=op, dims=np.array(dims),
                        keepdim=int(keep), x=x, y=y)
    return out


@generator
def layernorm(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    for shape, k in [((4, 6, 10), 1), ((2, 3, 4, 5), 2), ((3, 200), 1)]:
        norm = shape[len(shape) - k:]
        x, g = rng.standard_normal(shape), rng.standard_normal(shape)
        w, b = rng.standard_normal(norm), rng.standard_normal(norm)
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.layer_norm(tx, norm, tw, tb, eps=1e-6)
        ty.backward(torch.tensor(g))
        out.add(f"{'x'.join(map(str, shape))}-k{k}", k=k, x=x, g=g, w=w, b=b, y=ty, dx=tx.grad, dw=tw.grad,
                dbias=tb.grad)
    return out


@generator
def batchnorm(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    F = torch.nn.functional
    C = 3
    w0, b0 = rng.standard_normal(C) + 1, rng.standard_normal(C)
    tw, tb = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    trm, trv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    out.add("steps", w=w0, b=b0)
    for step in range(4):  # train mode, momentum 0.2, eps 1e-4, gradients accumulating into w, b
        x = rng.standard_normal((4, C, 3, 5)) * (step + 1) + step
        g = rng.standard_normal(x.shape)
        tx = torch.tensor(x, requires_grad=True)
        ty = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.2, eps=1e-4)
        ty.backward(torch.tensor(g))
        out.add(f"step{step}", x=x, g=g, y=ty, dx=tx.grad, running_mean=trm.clone(), running_var=trv.clone())
    out.add("steps", dw=tw.grad, dbias=tb.grad)
    # eval with the running statistics the steps left, float32
    x = rng.standard_normal((2, C, 4, 4)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    tw32 = torch.tensor(w0, dtype=torch.float32, requires_grad=True)
    tb32 = torch.tensor(b0, dtype=torch.float32)
    ty = F.batch_norm(tx, trm.float(), trv.float(), tw32, tb32, training=False, eps=1e-4)
    ty.backward(torch.tensor(g))
    out.add("eval", x=x, g=g, y=ty, dx=tx.grad, dw=tw32.grad)
    x = rng.standard_normal((3, 4, 2, 2)).astype(np.float32)
    out.add("no_running_stats", x=x, y=F.batch_norm(torch.tensor(x), None, None, training=True, eps=1e-5))
    return out


@generator
def optim_step(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    configs = from_test("ops/test_optim", "SGD_CONFIGS") + from_test("ops/test_optim", "ADAM_CONFIGS")
    for i, cfg in enumerate(configs):
        p = rng.standard_normal((4, 3)).astype(np.float32)
        grads = rng.standard_normal((from_test("ops/test_optim", "STEPS"), 4, 3)).astype(np.float32)
        tp = torch.tensor(p, requires_grad=True)
        if "momentum" in cfg:
            name, opt = f"sgd{i}", torch.optim.SGD([tp], **cfg)
        else:
            kw = {k: v for k, v in cfg.items() if k != "decoupled"}
            name = f"adam{i}"
            opt = (torch.optim.AdamW if cfg["decoupled"] else torch.optim.Adam)([tp], foreach=False, **kw)
        for g in grads:
            tp.grad = torch.tensor(g)
            opt.step()
        out.add(name, config=cfg, p=p, grads=grads, p_after=tp)
    return out


@generator
def pool(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    F = torch.nn.functional
    cases = []
    for xs, k, s, p, d, cm in from_test("ops/test_pool", "MAX_CASES"):
        cases.append(("max_pool2d", xs, (*k, *s, *p, *d, cm),
                      lambda t, k=k, s=s, p=p, d=d, cm=cm: F.max_pool2d(t, k, s, p, d, ceil_mode=bool(cm))))
    for xs, k, s, p, cm, cip, div in from_test("ops/test_pool", "AVG_CASES"):
        cases.append(("avg_pool2d", xs, (*k, *s, *p, cm, cip, div),
                      lambda t, k=k, s=s, p=p, cm=cm, cip=cip, div=div: F.avg_pool2d(
                          t, k, s, p, ceil_mode=bool(cm), count_include_pad=bool(cip), divisor_override=div or None)))
    for xs, o in from_test("ops/test_pool", "ADAPTIVE_CASES") + [((2, 3, 13, 11), (7, 5))]:
        cases.append(("adaptive_avg_pool2d", xs, o, lambda t, o=o: F.adaptive_avg_pool2d(t, o)))
    for i, (op, xs, ints, fn) in enumerate(cases):
        # values far apart, so no max-pool window holds a tie
        x = (rng.permutation(int(np.prod(xs))).reshape(xs) * 0.1 + rng.uniform(-0.01, 0.01, xs)).astype(np.float32)
        tx = torch.tensor(x, requires_grad=True)
        ty = fn(tx)
        dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
        ty.backward(torch.tensor(dy))
        out.add(f"{op}-{i}", op=op, ints=np.array(ints), x=x, dy=dy, y=ty, dx=tx.grad)
    return out


@generator
def loss_ce(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    F = torch.nn.functional
    N, C = 9, 5
    for reduction in ("none", "mean", "sum"):
        for weighted in (False, True):
            for e in (0.0, 0.2):
                for kind in ("index", "prob"):
                    z = rng.standard_normal((N, C)) * 2
                    w = rng.random(C) + 0.3 if weighted else None
                    if kind == "index":
                        target = rng.integers(0, C, N)
                        target[[1, 4]] = 2  # ignore_index = 2 hits these and any other 2
                        tt, ii = torch.tensor(target), 2
                    else:
                        target = rng.dirichlet(np.ones(C), N)
                        tt, ii = torch.tensor(target, requires_grad=True), -100
                    tz = torch.tensor(z, requires_grad=True)
                    tl = F.cross_entropy(tz, tt, weight=None if w is None else torch.tensor(w), reduction=reduction,
                                         ignore_index=ii, label_smoothing=e)
                    g = rng.standard_normal(tuple(tl.shape))
                    loss = tl.detach().clone()
                    tl.backward(torch.tensor(g))
                    out.add(f"{reduction}-w{int(weighted)}-e{e}-{kind}", reduction=reduction, ignore_index=ii,
                            label_smoothing=e, z=z, weight=w, target=target, g=g, loss=loss, dz=tz.grad,
                            dtarget=tt.grad if kind == "prob" else None)
    tl = F.cross_entropy(torch.zeros(2, 3), torch.tensor([1, 1]), ignore_index=1)
    out.add("all_ignored", loss=tl)
    return out


# ---------------------------------------------------------------- nn, optim
@generator
def nn_utils(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    tps = []
    for k, s in enumerate([(3, 4), (5,), (2, 2, 2)]):
        p = rng.standard_normal(s).astype(np.float32)
        g = (rng.standard_normal(s) * 3.0).astype(np.float32)
        tp = torch.tensor(p, requires_grad=True)
        tp.grad = torch.tensor(g)
        tps.append(tp)
        out.add(f"param{k}", p=p, grad=g)
    total = torch.nn.utils.clip_grad_norm_(tps, 1.0)
    for k, tp in enumerate(tps):
        out.add(f"param{k}", grad_after=tp.grad)
    out.add("clip", max_norm=1.0, total_norm=total)
    return out


@generator
def nn_layers(torch):
    rng, out = np.random.default_rng(SEED), Cases()
    nn = torch.nn
    stack = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False),
                          nn.BatchNorm2d(4, momentum=0.3), nn.GELU(), nn.MaxPool2d(2))
    sd = seeded_state_dict([(k, v.shape) for k, v in stack.state_dict().items()], SEED)
    stack.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    out.add("stack", weights_checksum=checksum(sd))
    for step in range(2):
        x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
        out.add(f"stack_train{step}", x=x, y=stack(torch.from_numpy(x)))
    out.add("stack_state", **{k.replace(".", "_"): v for k, v in stack.state_dict().items()})
    stack.eval()
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    out.add("stack_eval", x=x, y=stack(torch.from_numpy(x)))
    # the functional API: cross-entropy variants, layer_norm, tanh GELU, log_softmax
    tF = torch.nn.functional
    x = rng.standard_normal((4, 6)).astype(np.float32)
    t = rng.integers(0, 6, 4)
    w = (rng.random(6) + 0.5).astype(np.float32)
    t[1] = 2
    out.add("functional", x=x, target=t, weight=w)
    for i, kw in enumerate([dict(), dict(weight=True), dict(label_smoothing=0.2), dict(ignore_index=2, weight=True),
                            dict(reduction="sum", label_smoothing=0.1)]):
        kw_t = dict(kw, weight=torch.from_numpy(w) if kw.get("weight") else None)
        out.add(f"cross_entropy{i}", kwargs=kw, loss=tF.cross_entropy(torch.from_numpy(x), torch.from_numpy(t), **kw_t))
    probs = rng.dirichlet(np.ones(6), 4).astype(np.float32)
    ln_w, ln_b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    tx = torch.from_numpy(x)
    out.add("functional", probs=probs, probs_loss=tF.cross_entropy(tx, torch.from_numpy(probs)), ln_w=ln_w, ln_b=ln_b,
            layer_norm=tF.layer_norm(tx, (6,), torch.from_numpy(ln_w), torch.from_numpy(ln_b)),
            gelu_tanh=tF.gelu(tx, approximate="tanh"), log_softmax0=tF.log_softmax(tx, 0))
    return out


@generator
def lr_scheduler(torch):
    out = Cases()
    for name, make in from_test("optim/test_lr_scheduler", "CASES").items():
        opt = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)]},
                               {"params": [torch.zeros(3, requires_grad=True)], "lr": 1.0}], lr=0.1, momentum=0.9)
        sched = make(torch.optim.lr_scheduler, opt)
        lrs = [[g["lr"] for g in opt.param_groups]]
        for _ in range(20):
            opt.step()
            sched.step()
            lrs.append([g["lr"] for g in opt.param_groups])
        out.add(name, lrs=np.array(lrs, np.float64))
    return out


OPTIMIZER_CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=1e-2, betas=[0.8, 0.99], weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]


@generator
def optimizer(torch):
    """Two param groups (the second at 3x lr), 5 steps."""
    rng, out = np.random.default_rng(SEED), Cases()
    for i, (name, kw) in enumerate(OPTIMIZER_CASES):
        ps = [rng.standard_normal(s).astype(np.float32) for s in ((3, 2), (4,))]
        tps = [torch.tensor(p, requires_grad=True) for p in ps]
        tkw = {k: (tuple(v) if k == "betas" else v) for k, v in kw.items()}
        extra = {} if name == "SGD" else {"foreach": False}
        opt = getattr(torch.optim, name)([{"params": [tps[0]]}, {"params": [tps[1]], "lr": kw["lr"] * 3}],
                                         **tkw, **extra)
        grads = [[], []]
        for _ in range(5):
            for k, tp in enumerate(tps):
                g = rng.standard_normal(tp.shape).astype(np.float32)
                grads[k].append(g)
                tp.grad = torch.tensor(g)
            opt.step()
        out.add(f"{name}{i}", name=name, kwargs=kw, p0=ps[0], p1=ps[1], grads0=np.stack(grads[0]),
                grads1=np.stack(grads[1]), p0_after=tps[0], p1_after=tps[1])
    return out


# ---------------------------------------------------------------- models
RESNET_TRACKED = ["bn1.running_mean", "layer2.0.bn1.running_var", "layer4.1.bn2.running_var", "bn1.num_batches_tracked"]


@generator
def resnet(torch):
    import torchvision
    rng, out = np.random.default_rng(SEED), Cases(blocks=256)  # 256 blocks a gradient: 60 KiB in all
    for name in ("resnet18", "resnet50"):
        m = getattr(torchvision.models, name)()
        out.add(f"names-{name}", state=json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()]),
                modules=json.dumps([n for n, _ in m.named_modules()]))

    def seeded(name, num_classes):
        m = getattr(torchvision.models, name)(num_classes=num_classes)
        sd = seeded_state_dict([(k, v.shape) for k, v in m.state_dict().items()], SEED)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        return m, checksum(sd)

    for name in ("resnet18", "resnet50"):
        m, check = seeded(name, 10)
        case = f"eval-{name}"
        x = add_input(out, case, "x", rng, (2, 3, 48, 48), np.float32)
        with torch.no_grad():
            out.add(case, weights_checksum=check, logits=m.eval()(torch.from_numpy(x)))
    for dtype in ("float32", "float64"):
        m, check = seeded("resnet18", 6)
        if dtype == "float64":
            m.double()
        case = f"train-{dtype}"
        x = add_input(out, case, "x", rng, (4, 3, 40, 40), getattr(np, dtype))
        y = rng.integers(0, 6, 4)
        m.train()
        loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(x)), torch.from_numpy(y), label_smoothing=0.1)
        loss.backward()
        names = [k for k, _ in m.named_parameters()] if dtype == "float64" else ["fc.weight", "fc.bias"]
        params = dict(m.named_parameters())
        sd = m.state_dict()
        out.add(case, weights_checksum=check, y=y, loss=loss,
                **{f"grad.{k}": params[k].grad for k in names}, **{f"state.{k}": sd[k] for k in RESNET_TRACKED})
    return out


EFFNET_GRADS = ["features.0.0.weight", "features.1.0.block.1.fc1.weight", "features.4.1.block.2.fc2.bias",
                "features.6.3.block.1.0.weight", "features.8.1.weight", "classifier.1.weight", "classifier.1.bias"]
EFFNET_TRACKED = ["features.0.1.running_mean", "features.5.2.block.1.1.running_var"]


@generator
def efficientnet(torch):
    import torchvision
    rng, out = np.random.default_rng(SEED), Cases(blocks=256)
    m = torchvision.models.efficientnet_b0()
    out.add("names", state=json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()]),
            modules=json.dumps([n for n, _ in m.named_modules()]),
            params=sum(p.numel() for p in m.parameters()))

    def seeded(**kwargs):
        m = torchvision.models.efficientnet_b0(**kwargs)
        sd = seeded_state_dict([(k, v.shape) for k, v in m.state_dict().items()], SEED)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        return m, checksum(sd)

    m, check = seeded(num_classes=10)
    x = add_input(out, "eval", "x", rng, (2, 3, 64, 64), np.float32)
    with torch.no_grad():
        out.add("eval", weights_checksum=check, logits=m.eval()(torch.from_numpy(x)))
    # train mode without the random parts (dropout and stochastic depth off), in float64 so every
    # gradient is exact to rounding
    m, check = seeded(num_classes=6, dropout=0.0, stochastic_depth_prob=0.0)
    m.double().train()
    x = add_input(out, "train", "x", rng, (4, 3, 32, 32), np.float64)
    y = rng.integers(0, 6, 4)
    loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    params, sd = dict(m.named_parameters()), m.state_dict()
    out.add("train", weights_checksum=check, y=y, loss=loss, **{f"grad.{k}": params[k].grad for k in EFFNET_GRADS},
            **{f"state.{k}": sd[k] for k in EFFNET_TRACKED})
    return out


# ---------------------------------------------------------------- torchvision transforms
def _chw(torch, img):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(img, (2, 0, 1))))


def _hwc(t):
    return np.ascontiguousarray(np.transpose(t.numpy(), (1, 2, 0)))


PHOTOMETRIC = {
    "adjust_brightness": [0.0, 0.5, 0.73, 1.0, 1.27, 1.9],
    "adjust_saturation": [0.0, 0.73, 1.27, 2.5],
    "adjust_contrast": [0.0, 0.1, 0.73, 1.27, 3.0],
    "adjust_sharpness": [0.0, 0.73, 1.27, 2.0],
    "adjust_hue": [-0.5, -0.25, -0.1, 0.0, 0.1, 1 / 3, 0.5],
    "posterize": [0, 1, 4, 7, 8],
    "solarize": [0.0, 100.0, 178.5, 255.0],
    "autocontrast": [], "equalize": [], "invert": [], "rgb_to_grayscale": [],
}
RANDAUGMENT_OPS = ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                   "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"]
AFFINE_PARAMS = [dict(angle=20.0, translate=[3, -2], scale=0.9, shear=[10.0, 5.0]),
                 dict(angle=-33.0, translate=[0, 0], scale=1.2, shear=[0.0, 0.0], center=[3, 4]),
                 dict(angle=90.0, translate=[1, 1], scale=1.0, shear=[-7.0, 0.0])]


@generator
def torchvision_transforms(torch):
    """torchvision's tensor path on seeded uint8 images (CHW there, HWC here)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import autoaugment
    rng, out = np.random.default_rng(SEED), Cases()

    def image(shape):
        return rng.integers(0, 256, shape, dtype=np.uint8)

    for antialias in (True, False):
        for src, dst in [((50, 70), (20, 30)), ((13, 17), (40, 9)), ((224, 224), (112, 112)), ((31, 33), (30, 34)),
                         ((100, 100), (37, 61)), ((5, 3), (1, 1))]:
            img = image(src + (3,))
            out.add(f"resize-{src[0]}x{src[1]}-to-{dst[0]}x{dst[1]}-antialias{int(antialias)}", img=img, size=dst,
                    antialias=int(antialias), out=_hwc(TF.resize(_chw(torch, img), list(dst), antialias=antialias)))
    for size in [(3, 3), (4, 6), (7, 11), (9, 12), (10, 4)]:
        img = image((7, 11, 3))
        out.add(f"center_crop-{size[0]}x{size[1]}", img=img, size=size,
                out=_hwc(TF.center_crop(_chw(torch, img), list(size))))
    for mode in ["constant", "edge", "reflect", "symmetric"]:
        img = image((5, 6, 3))
        out.add(f"pad-{mode}", img=img, mode=mode,
                out=_hwc(TF.pad(_chw(torch, img), [2, 1, 3, 4], fill=0, padding_mode=mode)))
    img = image((7, 11, 3))
    out.add("crop-out_of_bounds", img=img, out=_hwc(TF.crop(_chw(torch, img), -2, -1, 6, 14)))
    img = image((9, 8, 3))
    out.add("to_tensor_normalize", img=img, out=TF.normalize(TF.to_tensor(img), [0.485, 0.456, 0.406],
                                                              [0.229, 0.224, 0.225]))
    for op in sorted(PHOTOMETRIC):
        for C in (1, 3):
            if op == "rgb_to_grayscale" and C == 1:
                continue
            for shape in [(1, 1), (2, 2), (3, 3), (7, 5), (31, 29)]:
                img = image(shape + (C,))
                if op == "equalize":
                    img[: max(1, shape[0] // 2)] //= 3  # a skewed histogram
                args = PHOTOMETRIC[op]
                fn = getattr(TF, op)
                outs = [_hwc(fn(_chw(torch, img), a)) for a in args] if args else [_hwc(fn(_chw(torch, img)))]
                out.add(f"photometric-{op}-{shape[0]}x{shape[1]}x{C}", op=op, img=img, args=np.array(args, np.float64),
                        out=np.stack(outs))
    for op in RANDAUGMENT_OPS:
        for shape in [(1, 1), (2, 3), (7, 5), (31, 29), (64, 64)]:
            img = image(shape + (3,))
            table, signed = autoaugment.RandAugment()._augmentation_space(31, shape)[op]
            bins = list(range(31)) if shape[0] * shape[1] < 100 else [0, 9, 30]
            mags = [float(table[b].item()) if table.ndim > 0 else 0.0 for b in bins]
            signs = (1.0, -1.0) if signed else (1.0,)
            outs = np.stack([np.stack([_hwc(autoaugment._apply_op(_chw(torch, img), op, s * m,
                                                                  interpolation=TF.InterpolationMode.NEAREST,
                                                                  fill=None)) for s in signs]) for m in mags])
            out.add(f"randaugment-{op}-{shape[0]}x{shape[1]}", op=op, img=img, bins=np.array(bins),
                    magnitudes=np.array(mags), signed=int(signed), out=outs)
    for fill in (None, [10, 200, 30]):
        for k, params in enumerate(AFFINE_PARAMS):
            for interpolation in ("nearest", "bilinear"):
                img = image((23, 17, 3))
                mode = getattr(TF.InterpolationMode, interpolation.upper())
                ref = TF.affine(_chw(torch, img), params["angle"], params["translate"], params["scale"],
                                params["shear"],
                                interpolation=mode, fill=None if fill is None else [float(v) for v in fill],
                                center=params.get("center"))
                out.add(f"affine-{k}-{interpolation}-fill{'' if fill is None else 'rgb'}", img=img,
                        params=dict(params, interpolation=interpolation, fill=fill), out=_hwc(ref))
    for angle in [9.0, -9.0, 30.0, 45.0, 90.0, 180.0]:
        img = image((32, 24, 3))
        out.add(f"rotate-{angle:g}", img=img, angle=angle, out=_hwc(TF.rotate(_chw(torch, img), angle)))
    img = image((15, 13, 3))
    # the factors our pipeline draws from a single-point range are float32
    out.add("color_jitter", img=img,
            brightness=_hwc(TF.adjust_brightness(_chw(torch, img), float(np.float32(1.3)))),
            hue=_hwc(TF.adjust_hue(_chw(torch, img), float(np.float32(0.2)))))
    return out


GOOGLENET_GRADS = ["conv1.conv.weight", "inception4a.branch3.1.bn.weight", "inception5b.branch4.1.conv.weight",
                   "fc.weight", "fc.bias", "aux1.fc2.weight", "aux2.conv.conv.weight"]


def _aux_relu_margin(torch, m, x):
    """The smallest |ReLU input| of GoogLeNet's auxiliary heads (BasicConv2d's batch norm output and
    fc1's), each over its layer's standard deviation, in float64."""
    import copy
    m64 = copy.deepcopy(m).double().train()
    seen = []
    for aux in (m64.aux1, m64.aux2):
        for layer in (aux.conv.bn, aux.fc1):
            layer.register_forward_hook(lambda mod, inp, o: seen.append((o.abs().min() / o.std()).item()))
    with torch.no_grad():
        m64(torch.from_numpy(x).double())
    return min(seen)


@generator
def googlenet(torch):
    """Names and shapes with and without the auxiliary heads; eval logits with and without
    transform_input; one train step with the auxiliary heads (dropouts 0, so both sides agree)."""
    import torchvision
    rng, out = np.random.default_rng(SEED), Cases(blocks=256)
    for aux in (False, True):
        m = torchvision.models.googlenet(aux_logits=aux, init_weights=False)
        out.add(f"names-aux{int(aux)}", state=json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()]),
                modules=json.dumps([n for n, _ in m.named_modules()]))

    def seeded(**kwargs):
        m = torchvision.models.googlenet(init_weights=False, **kwargs)
        sd = seeded_state_dict([(k, v.shape) for k, v in m.state_dict().items()], SEED)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        return m, checksum(sd)

    for transform in (False, True):
        m, check = seeded(num_classes=10, aux_logits=False, transform_input=transform)
        case = f"eval-transform{int(transform)}"
        x = add_input(out, case, "x", rng, (2, 3, 64, 64), np.float32)
        with torch.no_grad():
            out.add(case, weights_checksum=check, logits=m.eval()(torch.from_numpy(x)))
    m, check = seeded(num_classes=6, aux_logits=True, dropout=0.0, dropout_aux=0.0)
    # The auxiliary heads are narrow (128 BN channels over 4 x 4 x 4 values, 1024 fc1 units): where an
    # input puts one of their ReLU inputs within float32 rounding of 0, that unit's mask, and with it
    # a 1/64 share of a channel's weight gradient, depends on the last bits of the forward (a 12%
    # difference in aux2.conv's gradient between two float32 forwards that agree to 1e-5). Redraw
    # until every ReLU input of both heads is at least 1e-4 of its layer's spread away from 0.
    while True:
        x = add_input(out, "train", "x", rng, (4, 3, 64, 64), np.float32)
        if _aux_relu_margin(torch, m, x) >= 1e-4:
            break
    y = rng.integers(0, 6, 4)
    logits, aux2, aux1 = m.train()(torch.from_numpy(x))
    ce = torch.nn.functional.cross_entropy
    target = torch.from_numpy(y)
    loss = ce(logits, target) + 0.3 * (ce(aux1, target) + ce(aux2, target))
    loss.backward()
    params = dict(m.named_parameters())
    out.add("train", weights_checksum=check, y=y, loss=loss, logits=logits, aux1=aux1, aux2=aux2,
            **{f"grad.{k}": params[k].grad for k in GOOGLENET_GRADS},
            **{"state.inception3a.branch1.bn.running_var": m.state_dict()["inception3a.branch1.bn.running_var"]})
    return out


MOBILEVIT_VARIANTS = ("050", "075", "100", "125", "150", "175", "200")
MOBILEVIT_GRADS = ["stem.conv.weight", "stages.1.1.conv2_kxk.conv.weight", "stages.2.1.transformer.0.attn.qkv_proj.weight",
                   "stages.2.1.transformer.1.norm2.bias", "stages.3.1.transformer.3.mlp.fc1.weight",
                   "stages.4.1.norm.weight", "stages.4.1.conv_proj.bn.weight", "head.fc.bias"]
MOBILEVIT_TRACKED = ["stem.bn.running_mean", "stages.3.1.conv_proj.bn.running_var"]


@generator
def mobilevit(torch):
    """timm's mobilevitv2_*: names, shapes and parameter counts of every variant; eval logits of
    _050 at 256x256 and 112x112 (whose 7x7 stage-4 map takes the bilinear resize) and of _100 at
    256x256; train-mode steps of _050 in float32 at both sizes and in float64 at 112x112. The
    256x256 input is stored at 128x128 and each pixel repeated 2x2, to keep the file small."""
    import timm
    rng, out = np.random.default_rng(SEED), Cases(blocks=256)
    for v in MOBILEVIT_VARIANTS:
        m = timm.create_model(f"mobilevitv2_{v}")
        out.add(f"names-{v}", state=json.dumps([[k, list(t.shape)] for k, t in m.state_dict().items()]),
                modules=json.dumps([n for n, _ in m.named_modules()]), params=sum(p.numel() for p in m.parameters()))

    def seeded(variant):
        m = timm.create_model(f"mobilevitv2_{variant}", num_classes=10)
        sd = seeded_state_dict([(k, t.shape) for k, t in m.state_dict().items()], SEED)
        m.load_state_dict({k: torch.from_numpy(t) for k, t in sd.items()})
        return m, checksum(sd)

    half = add_input(out, "inputs", "x256", rng, (2, 3, 128, 128), np.float32)
    inputs = {256: half.repeat(2, axis=2).repeat(2, axis=3), 112: add_input(out, "inputs", "x112", rng, (2, 3, 112, 112))}
    for variant, size in (("050", 256), ("050", 112), ("100", 256)):
        m, check = seeded(variant)
        with torch.no_grad():
            logits = m.eval()(torch.from_numpy(inputs[size].astype(np.float32)))
        out.add(f"eval-{variant}-{size}", weights_checksum=check, logits=logits)
    for dtype, size in (("float32", 256), ("float32", 112), ("float64", 112)):
        m, check = seeded("050")
        m.to(getattr(torch, dtype)).train()
        y = rng.integers(0, 10, 2)
        logits = m(torch.from_numpy(inputs[size].astype(dtype)))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
        loss.backward()
        params, sd = dict(m.named_parameters()), m.state_dict()
        out.add(f"train-{dtype}-{size}", weights_checksum=check, y=y, logits=logits, loss=loss,
                **{f"grad.{k}": params[k].grad for k in MOBILEVIT_GRADS}, **{f"state.{k}": sd[k] for k in MOBILEVIT_TRACKED})
    return out


VIT_GRADS = ["conv_proj.weight", "class_token", "encoder.pos_embedding",
             "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
             "encoder.layers.encoder_layer_5.self_attention.out_proj.bias", "encoder.layers.encoder_layer_7.ln_1.weight",
             "encoder.layers.encoder_layer_11.mlp.3.bias", "encoder.ln.bias", "heads.head.weight"]
VIT_TINY = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=12)


@generator
def vit(torch):
    """ViT-B/16 names and shapes; at 224 and 112 (the 112 input is the 224 one subsampled by 2): eval
    and train logits, the loss and a few parameter gradients (float32); the position embeddings of a
    224 state dict resampled to 112's grid as timm does (bicubic, align_corners=False); a tiny
    configuration's train step in float64 with every gradient."""
    import torchvision
    from torchvision.models.vision_transformer import VisionTransformer
    rng, out = np.random.default_rng(SEED), Cases(blocks=256)
    m = torchvision.models.vit_b_16()
    out.add("names", state=json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()]),
            modules=json.dumps([n for n, _ in m.named_modules()]), params=sum(p.numel() for p in m.parameters()))

    def seeded(m):
        sd = seeded_state_dict([(k, v.shape) for k, v in m.state_dict().items()], SEED)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        return m, checksum(sd), sd

    x224 = add_input(out, "input", "x", rng, (2, 3, 224, 224), np.float32)
    y = rng.integers(0, 10, 2)
    out.add("input", y=y)
    for size in (224, 112):
        m, check, sd = seeded(torchvision.models.vit_b_16(num_classes=10, image_size=size))
        x = torch.from_numpy(np.ascontiguousarray(x224 if size == 224 else x224[:, :, ::2, ::2]))
        with torch.no_grad():
            eval_logits = m.eval()(x)
        logits = m.train()(x)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
        loss.backward()
        params = dict(m.named_parameters())
        out.add(str(size), weights_checksum=check, eval_logits=eval_logits, train_logits=logits, loss=loss,
                **{f"grad.{k}": params[k].grad for k in VIT_GRADS})
        if size == 224:
            pos = torch.from_numpy(sd["encoder.pos_embedding"])
            grid = pos[:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)
            grid = torch.nn.functional.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False)
            out.add("resample", weights_checksum=check,
                    pos=torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 49, 768)], dim=1))
    m, check, _ = seeded(VisionTransformer(image_size=32, num_classes=3, **VIT_TINY))
    m.double().train()
    x = add_input(out, "tiny", "x", rng, (2, 3, 32, 32), np.float64)
    loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(x)), torch.from_numpy(y % 3))
    loss.backward()
    out.add("tiny", weights_checksum=check, y=y % 3, loss=loss,
            **{f"grad.{k}": p.grad for k, p in m.named_parameters()})
    return out


@generator
def nn_transformer(torch):
    """MultiheadAttention (self and cross attention, both batch layouts, with and without the
    returned weights) and TransformerEncoderLayer (post- and pre-LN, relu and gelu), float64 with
    seeded weights: outputs, weights and the gradients of inputs and parameters."""
    rng, out = np.random.default_rng(SEED), Cases()
    nn = torch.nn

    def seeded(m):
        sd = seeded_state_dict([(k, v.shape) for k, v in m.state_dict().items()], SEED)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        return m.double(), checksum(sd)

    def run(case, m, check, inputs, call):
        ts = [torch.tensor(a, requires_grad=True) for a in inputs]
        res = call(m, *ts)
        outs = res if isinstance(res, tuple) else (res,)
        loss = 0
        items = {}
        for i, o in enumerate(outs):
            if o is None:
                continue
            g = rng.standard_normal(tuple(o.shape))
            items[f"out{i}"], items[f"g{i}"] = o, g
            loss = loss + (o * torch.from_numpy(g)).sum()
        loss.backward()
        items.update({f"x{i}": a for i, a in enumerate(inputs)})
        items.update({f"dx{i}": t.grad for i, t in enumerate(ts)})
        items.update({f"grad.{k}": p.grad for k, p in m.named_parameters()})
        out.add(case, weights_checksum=check, **items)

    for batch_first in (False, True):
        for need in (False, True):
            m, check = seeded(nn.MultiheadAttention(8, 2, batch_first=batch_first))
            x = rng.standard_normal((3, 5, 8) if batch_first else (5, 3, 8))
            run(f"mha-self-bf{int(batch_first)}-w{int(need)}", m.train(), check, [x],
                lambda m, x, need=need: m(x, x, x, need_weights=need))
    m, check = seeded(nn.MultiheadAttention(8, 4, batch_first=True))
    q, kv = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 6, 8))
    run("mha-cross-heads", m.train(), check, [q, kv, kv.copy()],
        lambda m, q, k, v: m(q, k, v, need_weights=True, average_attn_weights=False))
    for norm_first in (False, True):
        for act in ("relu", "gelu"):
            m, check = seeded(nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, activation=act,
                                                         norm_first=norm_first, batch_first=True))
            run(f"layer-nf{int(norm_first)}-{act}", m.train(), check, [rng.standard_normal((2, 5, 8))],
                lambda m, x: m(x))
    return out

def _vggface2_resnet50(torch, se, num_classes):
    """The VGGFace2 ResNet-50 / SE-ResNet-50 (github.com/cydonia999/VGGFace2-pytorch models/resnet.py
    and models/senet.py, from the Caffe models) written from their description: stride on the first
    1x1 convolution, stem max pool 3x3/2 without padding rounding up, SE (conv4 -> ReLU -> conv5 ->
    sigmoid, reduction 16) on the bn3 output before the residual addition, their 7x7 average pool
    (the global mean where the final map is not 7x7). Module names and registration order as
    there, so seeded_state_dict gives both sides the same numbers."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, inplanes, planes, stride, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample
            if se:
                self.conv4 = nn.Conv2d(planes * 4, planes * 4 // 16, 1)
                self.conv5 = nn.Conv2d(planes * 4 // 16, planes * 4, 1)

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            if se:
                w = F.avg_pool2d(out, kernel_size=out.size(2))
                out = out * torch.sigmoid(self.conv5(self.relu(self.conv4(w))))
            residual = x if self.downsample is None else self.downsample(x)
            return self.relu(out + residual)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
            inplanes = 64
            for s, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
                stride = 1 if s == 0 else 2
                down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(planes * 4))
                layer = [Block(inplanes, planes, stride, down)]
                layer += [Block(planes * 4, planes, 1, None) for _ in range(1, blocks)]
                setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
                inplanes = planes * 4
            self.avgpool = nn.AvgPool2d(7, stride=1)
            self.fc = nn.Linear(2048, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.avgpool(x) if x.shape[-2:] == (7, 7) else x.mean((2, 3), keepdim=True)
            return self.fc(x.flatten(1))

    return Net()


# float32 gradients only where float32 itself is accurate: with random weights and batch 2, the
# batch-statistics backward through 16 blocks amplifies rounding so much that torch's own float32
# and float64 gradients of the early layers differ by percents; those are checked in float64. No
# per-channel BN gradient either: at 224 one pre-ReLU value of the last block is within 4e-6 of 0
# (channel 496 of SE-ResNet, 847 of ResNet), so float32 rounding may flip that ReLU and move that
# channel's 98-term sum by 2%, while weight gradients sum over channels and barely notice.
SENET_F32_GRADS = ["layer4.2.conv3.weight", "fc.weight", "fc.bias"]
SENET_F64_GRADS = ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                   "layer3.5.bn3.bias", "layer4.2.conv3.weight", "fc.weight"]
SENET_SE_GRADS = ["layer1.0.conv4.weight", "layer3.2.conv5.bias", "layer4.2.conv5.weight"]
SENET_TRACKED = ["bn1.running_mean", "layer2.0.bn1.running_var", "layer4.2.bn3.running_var"]


@generator
def senet(torch):
    """SE-ResNet-50 and ResNet-50 in the VGGFace2 layout (no torchvision model: the reference above):
    names and shapes at 8631 classes, then per model and input size (224, 112), batch 2: float32
    eval logits and one train-mode step (batch statistics: logits, loss, late gradients, running
    stats), and at 112 a float64 train step with gradients across the net. Weights: seeded, with the
    test's damping; inputs: seeded_input draws (too big to store)."""
    damped = from_test("models/test_senet", "DAMPED")
    out = Cases(blocks=256)
    for model, se in (("se_resnet50", True), ("resnet50_vggface2", False)):
        m = _vggface2_resnet50(torch, se, 8631)
        out.add(f"names-{model}", state=json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()]),
                params=sum(p.numel() for p in m.parameters()))
        sd = seeded_state_dict([(k, v.shape) for k, v in _vggface2_resnet50(torch, se, 10).state_dict().items()],
                               SEED)
        weights = {k: torch.from_numpy(v * np.float32(0.5) if k.endswith(damped) else v) for k, v in sd.items()}
        rng = np.random.default_rng(SEED)

        def step(size, dtype):
            m = _vggface2_resnet50(torch, se, 10)
            m.load_state_dict(weights)
            m.to(dtype)
            x = torch.from_numpy(seeded_input((2, 3, size, size), SEED + size)).to(dtype)
            with torch.no_grad():
                eval_logits = m.eval()(x)
            logits = m.train()(x)
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
            loss.backward()
            return m, eval_logits, logits, loss

        for size, dtype in ((224, torch.float32), (112, torch.float32), (112, torch.float64)):
            case = f"{model}-{size}-{str(dtype)[len('torch.'):]}"
            y = rng.integers(0, 10, 2)
            m, eval_logits, logits, loss = step(size, dtype)
            params, state = dict(m.named_parameters()), m.state_dict()
            if dtype == torch.float32:
                grads = SENET_F32_GRADS + (SENET_SE_GRADS[-1:] if se else [])
                exact = dict(step(size, torch.float64)[0].named_parameters())
                for k in grads:  # the reference's own float32 rounding stays far below the test's 1e-3
                    err = float((params[k].grad.double() - exact[k].grad).abs().max() / exact[k].grad.abs().max())
                    assert err < 1e-4, f"{case}: float32 gradient of {k} is ill-conditioned ({err:.1e})"
            else:
                grads = SENET_F64_GRADS + (SENET_SE_GRADS if se else [])
            out.add(case, weights_checksum=checksum(sd), x_checksum=checksum({"x": seeded_input((2, 3, size, size),
                                                                                                  SEED + size)}),
                    y=y, eval_logits=eval_logits, train_logits=logits, loss=loss,
                    **{f"grad.{k}": params[k].grad for k in grads}, **{f"state.{k}": state[k] for k in SENET_TRACKED})
    return out


# As for SENET_*: with random weights and batch 2, torch's own float32 and float64 gradients of
# every layer but the classifier differ by 0.1-20% (batch-statistics backward), so float32 checks
# the classifier and float64 the rest.
INCEPTION_F32_GRADS = ["fc.weight", "fc.bias"]
INCEPTION_F64_GRADS = ["Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.weight", "Mixed_5b.branch_pool.conv.weight",
                       "Mixed_6a.branch3x3.conv.weight", "Mixed_6e.branch7x7dbl_5.conv.weight",
                       "Mixed_7c.branch3x3dbl_3b.bn.bias", "fc.weight", "AuxLogits.conv1.conv.weight",
                       "AuxLogits.fc.weight"]
INCEPTION_TRACKED = ["Conv2d_1a_3x3.bn.running_mean", "Mixed_6b.branch1x1.bn.running_var"]


@generator
def inception(torch):
    """torchvision's inception_v3: names and shapes with and without the auxiliary head; batch 2 at
    299 x 299 (auxiliary head on) and 139 x 139 (off: it needs 299): eval logits and a train-mode
    step (dropout 0; batch statistics): logits, loss (+ 0.3 x the auxiliary loss), gradients,
    running stats, in float32, and at 299 in float64; eval logits with transform_input. Inputs are
    seeded_input draws."""
    import torchvision
    rng, out = np.random.default_rng(SEED), Cases(blocks=256)
    for aux in (False, True):
        m = torchvision.models.inception_v3(aux_logits=aux, init_weights=False)
        out.add(f"names-aux{int(aux)}", state=json.dumps([[k, list(v.shape)] for k, v in m.state_dict().items()]),
                modules=json.dumps([n for n, _ in m.named_modules()]), params=sum(p.numel() for p in m.parameters()))

    def seeded(dtype, **kwargs):
        m = torchvision.models.inception_v3(init_weights=False, num_classes=10, dropout=0.0, **kwargs)
        sd = seeded_state_dict([(k, v.shape) for k, v in m.state_dict().items()], SEED)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        return m.to(dtype), checksum(sd)

    for size, aux, dtype in ((299, True, torch.float32), (139, False, torch.float32), (299, True, torch.float64)):
        case = f"train-{size}-{str(dtype)[len('torch.'):]}"
        y = rng.integers(0, 10, 2)
        m, check = seeded(dtype, aux_logits=aux)
        x = seeded_input((2, 3, size, size), SEED + size)
        with torch.no_grad():
            eval_logits = m.eval()(torch.from_numpy(x).to(dtype))
        outputs = m.train()(torch.from_numpy(x).to(dtype))
        logits, aux_logits = outputs if aux else (outputs, None)
        target = torch.from_numpy(y)
        loss = torch.nn.functional.cross_entropy(logits, target)
        if aux:
            loss = loss + 0.3 * torch.nn.functional.cross_entropy(aux_logits, target)
        loss.backward()
        params = dict(m.named_parameters())
        grads = INCEPTION_F32_GRADS if dtype == torch.float32 else INCEPTION_F64_GRADS
        out.add(case, weights_checksum=check, x_checksum=checksum({"x": x}), y=y, aux=int(aux),
                eval_logits=eval_logits, train_logits=logits, aux_logits=aux_logits, loss=loss,
                **{f"grad.{k}": params[k].grad for k in grads},
                **{f"state.{k}": m.state_dict()[k] for k in INCEPTION_TRACKED})
    m, check = seeded(torch.float32, aux_logits=False, transform_input=True)
    x = seeded_input((2, 3, 139, 139), SEED + 139)
    with torch.no_grad():
        out.add("eval-transform", weights_checksum=check, x_checksum=checksum({"x": x}),
                logits=m.eval()(torch.from_numpy(x)))
    return out


# ---------------------------------------------------------------- writing
def versions():
    import torch
    meta = {"torch": torch.__version__, "numpy": np.__version__}
    for extra in ("torchvision", "timm"):
        try:
            meta[extra] = __import__(extra).__version__
        except ImportError:
            pass
    return meta


def build(name):
    """Run one generator under deterministic torch settings; returns its {key: array}."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    try:
        return GENERATORS[name](torch).arrays
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


def write(name, arrays, meta):
    """An .npz np.load reads, with fixed entry order and timestamps, so equal arrays give equal bytes."""
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, name + ".npz")
    entries = {"__meta__": np.array(json.dumps(dict(meta, fixture=name), sort_keys=True))}
    entries.update(arrays)
    with zipfile.ZipFile(path + ".tmp", "w") as z:
        for key, a in entries.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, buf.getvalue(), compresslevel=9)
    os.replace(path + ".tmp", path)
    return path


def main(names):
    unknown = sorted(set(names) - set(GENERATORS))
    if unknown:
        sys.exit(f"unknown fixture(s) {unknown}; known: {sorted(GENERATORS)}")
    meta = versions()
    for name in names or GENERATORS:
        path = write(name, build(name), meta)
        print(f"{os.path.relpath(path, ROOT)}: {os.path.getsize(path) / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
