"""Argument normalisation shared by the Python layers: one definition of each rule."""
import numbers


def pair(value, name):
    """(a, b) from an int or a sequence of one or two ints, as torch.nn's `_pair` and torchvision's
    `_setup_size` accept them; integral floats (112.0) pass. TypeError / ValueError naming `name`
    otherwise."""
    if isinstance(value, numbers.Number):
        items = (value, value)
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(items) == 1:
            items = items * 2
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    out = []
    for v in items:
        if not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v != v or v in (float("inf"), float("-inf")) or v != int(v):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        # op attributes are int64: a larger value would otherwise be an OverflowError naming nothing
        if not -(1 << 62) <= int(v) < 1 << 62:
            raise ValueError(f"{name} = {value!r} is out of range")
        out.append(int(v))
    return out[0], out[1]
