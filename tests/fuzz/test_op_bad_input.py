"""Every op in the table, called with malformed arguments, must raise TypeError / ValueError
(IndexError for a dim out of range, MemoryError for a size too large to allocate) and never crash
the interpreter. RuntimeError is a bug's class here (AF_ERR_INTERNAL, or a status the op should not
return), so it fails the sweep like any other exception.

Two parts: random argument lists (most malformed; the few that happen to be valid may succeed),
and for every op a set of calls that are malformed by construction and must raise. The sweep runs
in a child process so that a segfault is reported as a failing test naming the op and the
arguments, instead of killing the test run."""
import json
import subprocess
import sys
import textwrap

import affectfer as af

SWEEP = textwrap.dedent(r'''
    import itertools, json, random, re, sys
    import numpy as np
    import affectfer as af

    ops = json.loads(sys.argv[1])
    rng = random.Random(0)
    shapes = [(), (0,), (3,), (2, 3), (1, 1, 1), (2, 3, 4, 5), (2, 0, 4, 4), (1, 2, 3, 4, 5)]
    dtypes = ["float32", "float64", "uint8", "int64", "int32", "bool"]
    pool = [af.zeros(s, dtype=d) for s in shapes for d in dtypes]
    pool += [af.tensor(np.full((2, 3), np.nan, np.float32)), af.tensor(np.full((4,), -7, np.int64))]
    int_pool = [-(2**62), -5, -1, 0, 1, 2, 3, 7, 2**40]  # 2**40 elements: refused at once, never paged in
    allowed = (TypeError, ValueError, IndexError, MemoryError)
    wrong = []

    def expect(desc, fn, classes=allowed, match=""):
        print(desc, flush=True)  # the last line printed names the call that crashed, if one does
        try:
            fn()
        except classes or allowed as exc:
            if not re.search(match, str(exc)):
                wrong.append(f"{desc}: {type(exc).__name__} without {match!r}: {exc}")
            return
        except Exception as exc:
            wrong.append(f"{desc}: {type(exc).__name__}: {exc}")
            return
        if classes is not None:  # None: a random call that happens to be valid may succeed
            wrong.append(f"{desc}: no exception")

    for op in ops:
        for trial in range(60):
            n_in = rng.randint(0, 6)
            inputs = [rng.choice(pool + [None]) for _ in range(n_in)]
            ints = [rng.choice(int_pool) for _ in range(rng.randint(0, 10))]
            floats = [rng.choice([-1.0, 0.0, 0.5, 1e30, float("nan")]) for _ in range(rng.randint(0, 3))]
            desc = f"{op} inputs={[None if t is None else (t.shape, t.dtype) for t in inputs]} ints={ints} floats={floats}"
            expect(desc, lambda: af._C.call(af._C.ops[op], inputs, ints, floats), None)

    # malformed by construction: each must raise, with the class the binding contract gives
    x, big = af.zeros(2, 3), [1] * 64
    for op in ops:
        def bad(inputs, ints=(), floats=(), op=op):
            return lambda: af._C.call(af._C.ops[op], inputs, ints, floats)
        n = af._C.op_max_inputs[op]
        expect(f"{op} with {n + 1} inputs", bad([af.zeros(2, 3) for _ in range(n + 1)]), ValueError,
               match=r"at most \d+ tensor input")
        expect(f"{op} without inputs", bad([]), (TypeError, ValueError))
        expect(f"{op} with a non-tensor input", bad([x, "x", x, x]), TypeError)
        expect(f"{op} with too many tensors", bad([x] * 40), (TypeError, ValueError))
        expect(f"{op} with a string attribute", bad([x, x], ["x"]), TypeError)
        expect(f"{op} with a float in the int attributes", bad([x, x], [0.5]), TypeError)
        expect(f"{op} with an int64 overflow", bad([x, x], [1 << 70]), ValueError, match="out of the int64 range")
        expect(f"{op} with a float64 overflow", bad([x, x], (), [1 << 1100]), ValueError, match="out of the float64 range")
        expect(f"{op} with 64 int attributes", bad([x, x], big), ValueError)
        expect(f"{op} with 64 float attributes", bad([x, x], (), [0.5] * 64), ValueError)
    for op, inputs, ints in [("sum", [x], (0, 7)), ("mean", [x], (0, -3)), ("softmax", [x], (2,)),
                             ("log_softmax", [x], (-3,)), ("cat", [x, x], (2,)), ("split", [x], (5, 1, 1)),
                             ("slice", [x], (2, 0, 1, 1)), ("permute", [x], (0, 2))]:
        expect(f"{op} with dim out of range {ints}", bad(inputs, ints, op=op), IndexError)
    print(json.dumps(wrong))
    print("SWEEP-OK", flush=True)
''')


def test_no_op_crashes_on_malformed_arguments():
    # optimizer update ops mutate their inputs in place by design; malformed calls must still raise
    ops = list(af._C.op_names)
    proc = subprocess.run([sys.executable, "-c", SWEEP, json.dumps(ops)], capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines() or ["(nothing)"]
    assert proc.returncode == 0 and lines[-1] == "SWEEP-OK", (
        f"the sweep died (exit {proc.returncode}) on: {lines[-1]}\nstderr tail:\n{proc.stderr[-2000:]}")
    wrong = json.loads(lines[-2])
    assert not wrong, f"{len(wrong)} malformed calls raised the wrong class or nothing:\n" + "\n".join(wrong[:40])
