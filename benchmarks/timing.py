"""Timing helpers the benchmark scripts share: best-of-n timing with a switchable clock, interleaved
timing of several contenders, and one training step / forward pass of an affectfer or a torch model.

The scripts run as `python benchmarks/<script>.py`, so this directory is on sys.path and they import
it as `import timing`."""
import statistics
import time

CLOCK = time.perf_counter  # a script switches it, e.g. to time.process_time for CPU time


def thread_counts(parser, text):
    """The thread counts of a --threads argument ("1,2"), or parser.error naming the bad value."""
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        parser.error(f"--threads: expected comma-separated integers, got {text!r}")


def best_time(fn, reps, setup=None):
    """Minimum time of fn() over reps runs after one warm-up; setup() runs untimed before each and
    its result is passed to fn."""
    best = float("inf")
    for i in range(reps + 1):
        arg = setup() if setup else None
        t0 = CLOCK()
        fn(arg) if setup else fn()
        dt = CLOCK() - t0
        if i:
            best = min(best, dt)
    return best


def interleaved_rounds(fns, reps):
    """{name: [time of each round]} of each fn in `fns` ({name: fn}) over reps rounds after one
    warm-up round; every round runs each contender once, in turn, so a slow spell of a shared
    machine falls on all of them rather than on whichever ran during it."""
    times = {name: [] for name in fns}
    for i in range(reps + 1):
        for name, fn in fns.items():
            t0 = CLOCK()
            fn()
            dt = CLOCK() - t0
            if i:
                times[name].append(dt)
    return times


def interleaved_best(fns, reps):
    """{name: minimum time} of each fn over interleaved_rounds(fns, reps)."""
    return {name: min(ts) for name, ts in interleaved_rounds(fns, reps).items()}


def median_ratio(times_a, times_b):
    """Median over rounds of times_a[i] / times_b[i] (two contenders' times from the same rounds): on a
    host where single runs move by 10-30%, the rounds' own ratios say more than best against best."""
    return statistics.median(a / b for a, b in zip(times_a, times_b))


def _logits(out, output=0):
    """The class logits of a model that returns a tuple: its element `output` (0: DAN, GoogLeNet's
    auxiliary outputs in training mode; 1: SMM-EmotionNet's (va, expression, au))."""
    return out[output] if isinstance(out, tuple) else out


def af_train_step(model, x, y, lr=0.01, output=0):
    """One SGD (momentum 0.9) cross-entropy step of an affectfer model in training mode, as a
    function of no arguments; `output` picks the logits of a model with several outputs (_logits)."""
    from affectfer import optim
    from affectfer.nn import functional as F
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step():
        model.train()
        opt.zero_grad()
        F.cross_entropy(_logits(model(x), output), y).backward()
        opt.step()
    return step


def torch_train_step(model, x, y, lr=0.01, output=0):
    """The same step for a torch model."""
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step():
        model.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(_logits(model(x), output), y).backward()
        opt.step()
    return step


def af_forward(model, x):
    """An inference forward pass of an affectfer model (eval mode, no tape)."""
    import affectfer as af

    def forward():
        model.eval()
        with af.no_grad():
            model(x)
    return forward


def torch_forward(model, x):
    """The same for a torch model (eval mode, inference mode)."""
    import torch

    def forward():
        model.eval()
        with torch.inference_mode():
            model(x)
    return forward
