"""Every op in csrc/ops/op_list.h has a reference test, and every differentiable one a float64
gradcheck. Each tests/ops/test_<op>.py declares REFERENCE_TESTED and GRAD_CHECKED: the sets that
drive its parametrized tests, so a name there is a test that ran."""
import importlib
import pkgutil

import affectfer as af
import tests.ops


def _declared(attr):
    names = set()
    for mod in pkgutil.iter_modules(tests.ops.__path__):
        module = importlib.import_module(f"tests.ops.{mod.name}")
        names |= set(getattr(module, attr, ()))
    return names


def test_every_op_has_a_reference_test():
    missing = set(af._C.op_names) - _declared("REFERENCE_TESTED")
    assert not missing, f"ops without a reference test: {sorted(missing)}"


def test_every_differentiable_op_has_a_gradcheck():
    differentiable = {name for name, mask in af._C.op_differentiable_inputs.items() if mask}
    missing = differentiable - _declared("GRAD_CHECKED")
    assert not missing, f"differentiable ops without a float64 gradcheck: {sorted(missing)}"


def test_declarations_name_real_ops():
    unknown = (_declared("REFERENCE_TESTED") | _declared("GRAD_CHECKED")) - set(af._C.op_names)
    assert not unknown, f"tests declare ops that op_list.h does not have: {sorted(unknown)}"
