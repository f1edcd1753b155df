"""affectfer.optim.lr_scheduler: the same lr as torch.optim.lr_scheduler at every step (against
torch's recorded lrs and against hand-computed closed forms)."""
import math

import pytest

import affectfer as af
from affectfer import optim
from affectfer.optim import lr_scheduler as sched
from tests import reference


def make_opt(lr=0.1):
    p, q = af.zeros(2, requires_grad=True), af.zeros(3, requires_grad=True)
    return optim.SGD([{"params": [p]}, {"params": [q], "lr": lr * 10}], lr=lr, momentum=0.9)


def trace(opt, scheduler, n):
    lrs = [[g["lr"] for g in opt.param_groups]]
    for _ in range(n):
        opt.step()
        scheduler.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        assert scheduler.get_last_lr() == lrs[-1]
    return lrs


CASES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=4),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
    "warmup+cosine": lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.01, total_iters=3),
                                                     m.CosineAnnealingLR(o, T_max=10)], milestones=[3]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_step_by_step(name):
    """torch.optim.lr_scheduler's lr for both groups at every step (make_fixtures.py builds the
    same schedule on the same two-group SGD)."""
    ours = make_opt()
    a = trace(ours, CASES[name](sched, ours), 20)
    b = reference.case("lr_scheduler", name)["lrs"].tolist()
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b)):
        assert x == pytest.approx(y, rel=1e-15, abs=1e-18), f"step {step}: {x} != {y}"


def test_closed_forms():
    opt = make_opt(0.1)
    lrs = trace(opt, sched.StepLR(opt, step_size=3, gamma=0.5), 7)
    assert [r[0] for r in lrs] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])
    opt = make_opt(0.1)
    lrs = trace(opt, sched.CosineAnnealingLR(opt, T_max=8, eta_min=0.01), 8)
    expect = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(9)]
    assert [r[0] for r in lrs] == pytest.approx(expect, rel=1e-12)
    assert [r[1] for r in lrs] == pytest.approx([0.01 + 0.99 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(9)])
    opt = make_opt(0.1)
    lrs = trace(opt, sched.LinearLR(opt, start_factor=0.25, total_iters=3), 5)
    assert [r[0] for r in lrs] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1], rel=1e-12)


def test_warmup_cosine_helper():
    opt = make_opt(0.1)
    lrs = [r[0] for r in trace(opt, sched.warmup_cosine(opt, warmup_steps=4, total_steps=12,
                                                        warmup_start_factor=0.1), 12)]
    assert lrs[:5] == pytest.approx([0.01, 0.0325, 0.055, 0.0775, 0.1], rel=1e-12)
    assert lrs[4:] == pytest.approx([0.05 * (1 + math.cos(math.pi * t / 8)) for t in range(9)], rel=1e-9, abs=1e-15)
    with pytest.raises(ValueError, match="warmup_steps"):
        sched.warmup_cosine(make_opt(), warmup_steps=5, total_steps=5)


def test_scheduler_state_dict_resumes():
    opt = make_opt()
    s = sched.CosineAnnealingLR(opt, T_max=10)
    trace(opt, s, 4)
    saved_sched, saved_opt = s.state_dict(), opt.state_dict()
    rest = trace(opt, s, 3)
    opt2 = make_opt()
    opt2.load_state_dict(saved_opt)
    s2 = sched.CosineAnnealingLR(opt2, T_max=10, last_epoch=4)
    s2.load_state_dict(saved_sched)
    assert trace(opt2, s2, 3)[1:] == rest[1:]
