"""Every op in the table, called with malformed arguments, must raise a Python exception
(TypeError / ValueError / IndexError / MemoryError) and never crash the interpreter.

The sweep runs in a child process so that a segfault is reported as a failing test naming the
op and the arguments, instead of killing the test run."""
import json
import subprocess
import sys
import textwrap

import affectfer as af

SWEEP = textwrap.dedent(r'''
    import itertools, json, random, sys
    import numpy as np
    import affectfer as af

    ops = json.loads(sys.argv[1])
    rng = random.Random(0)
    shapes = [(), (0,), (3,), (2, 3), (1, 1, 1), (2, 3, 4, 5), (2, 0, 4, 4), (1, 2, 3, 4, 5)]
    dtypes = ["float32", "float64", "uint8", "int64", "int32", "bool"]
    pool = [af.zeros(s, dtype=d) for s in shapes for d in dtypes]
    pool += [af.tensor(np.full((2, 3), np.nan, np.float32)), af.tensor(np.full((4,), -7, np.int64))]
    int_pool = [-(2**62), -5, -1, 0, 1, 2, 3, 7, 2**40]  # 2**40 elements: refused at once, never paged in
    allowed = (TypeError, ValueError, IndexError, MemoryError, RuntimeError, FloatingPointError)
    for op in ops:
        for trial in range(60):
            n_in = rng.randint(0, 6)
            inputs = [rng.choice(pool + [None]) for _ in range(n_in)]
            ints = [rng.choice(int_pool) for _ in range(rng.randint(0, 10))]
            floats = [rng.choice([-1.0, 0.0, 0.5, 1e30, float("nan")]) for _ in range(rng.randint(0, 3))]
            desc = f"{op} inputs={[None if t is None else (t.shape, t.dtype) for t in inputs]} ints={ints} floats={floats}"
            print(desc, flush=True)
            try:
                af._C.call(af._C.ops[op], inputs, ints, floats)
            except allowed:
                pass
    print("SWEEP-OK", flush=True)
''')


def test_no_op_crashes_on_malformed_arguments():
    # optimizer update ops mutate their inputs in place by design; malformed calls must still raise
    ops = list(af._C.op_names)
    proc = subprocess.run([sys.executable, "-c", SWEEP, json.dumps(ops)], capture_output=True, text=True, timeout=600)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "(nothing)"
    assert proc.returncode == 0 and last == "SWEEP-OK", (
        f"the sweep died (exit {proc.returncode}) on: {last}\nstderr tail:\n{proc.stderr[-2000:]}")
