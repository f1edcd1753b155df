"""affectfer._args.pair: the one (height, width) rule behind nn layers, nn.functional and transforms."""
import pytest

import affectfer.nn as nn
import affectfer.transforms as T
from affectfer._args import pair


def test_pair_forms():
    assert pair(3, "k") == (3, 3)
    assert pair((2,), "k") == (2, 2)
    assert pair([4, 5], "k") == (4, 5)
    assert pair((112.0, 96.0), "k") == (112, 96)


@pytest.mark.parametrize("value, error", [((1, 2, 3), ValueError), (2.5, ValueError), ((), ValueError),
                                          (None, TypeError), (("a", "b"), TypeError)])
def test_pair_refuses(value, error):
    with pytest.raises(error, match="size must be an int or a pair of ints"):
        pair(value, "size")


def test_every_user_names_its_argument():
    with pytest.raises(ValueError, match="CenterCrop: size"):
        T.CenterCrop((1, 2, 3))
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(3, 4, kernel_size=(1, 2, 3))
    import numpy as np
    import affectfer.nn.functional as F
    from affectfer import tensor
    with pytest.raises(ValueError, match="stride"):
        F.max_pool2d(tensor(np.zeros((1, 1, 4, 4), dtype=np.float32)), 2, stride=(1, 2, 3))
