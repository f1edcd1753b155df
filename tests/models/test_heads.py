"""models.heads: the multi-task heads, DeviationModule, SoftVotingEnsemble; losses.MultiTaskLoss."""
import numpy as np
import pytest

import affectfer as af
from affectfer import decision, losses, models, nn, optim
from affectfer.testing import gradcheck


def test_heads_shapes_and_landmark_layout(rng):
    af.manual_seed(0)
    x = af.tensor(rng.standard_normal((4, 16)).astype(np.float32))
    lm = models.LandmarkHead(16, num_points=68)
    out = lm(x)
    assert out.shape == (4, 68, 2)
    np.testing.assert_allclose(out.numpy()[:, :, 0], lm.encode1(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(out.numpy()[:, :, 1], lm.encode2(x).numpy(), rtol=1e-6)
    va = models.ValenceArousalHead(16).train()
    v = va(x).numpy()
    assert v.shape == (4, 2) and np.all(np.abs(v) <= 1)
    assert models.ActionUnitHead(16)(x).shape == (4, 12)
    assert models.ExpressionHead(16, 6)(x).shape == (4, 6)
    with pytest.raises(ValueError, match="activation"):
        models.ValenceArousalHead(16, activation="relu")


def test_valence_arousal_head_is_tanh_of_bn_of_fc_and_gradchecks(rng):
    af.manual_seed(3)
    head = models.ValenceArousalHead(5).double().train()
    x = af.tensor(rng.standard_normal((6, 5)), dtype="float64", requires_grad=True)
    z = x.numpy() @ head.fc.weight.numpy().T + head.fc.bias.numpy()
    bn = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * head.bn.weight.numpy() + head.bn.bias.numpy()
    np.testing.assert_allclose(head(x).numpy(), np.tanh(bn), rtol=1e-10, atol=1e-12)  # batch statistics
    head.eval()
    z = x.numpy() @ head.fc.weight.numpy().T + head.fc.bias.numpy()
    bn = (z - head.bn.running_mean.numpy()) / np.sqrt(head.bn.running_var.numpy() + 1e-5)
    np.testing.assert_allclose(head(x).numpy(), np.tanh(bn * head.bn.weight.numpy() + head.bn.bias.numpy()),
                               rtol=1e-10, atol=1e-12)
    plain = models.ValenceArousalHead(5, bn=False, activation=None).double()
    np.testing.assert_allclose(plain(x).numpy(), x.numpy() @ plain.fc.weight.numpy().T + plain.fc.bias.numpy(),
                               rtol=1e-12)
    head.train()
    gradcheck(lambda x, w, g: head(x), [x, head.fc.weight, head.bn.weight])  # perturbs the parameters in place


def test_deviation_module_gradcheck_flows_into_the_face_twin_and_classifier(rng):
    af.manual_seed(4)

    def extractor():
        return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    dev = models.DeviationModule(extractor(), num_classes=2, feature_dim=3).double().train()
    x = af.tensor(rng.standard_normal((2, 2, 5, 5)), dtype="float64")
    face_w, face_b, cls_w = dev.face[0].weight, dev.face[0].bias, dev.classifier.weight
    assert all(p.requires_grad for p in dev.face.parameters())
    # the identity twin is a constant of the face twin's and the classifier's parameters
    gradcheck(lambda w, b, c: dev(x), [face_w, face_b, cls_w])
    out = dev(x).sum()
    out.backward()
    assert all(p.grad is None for p in dev.identity.parameters())


def test_shared_trunk_has_no_activation_and_gradchecks(rng):
    trunk = models.SharedTrunk((6, 5, 3)).double().eval()
    x = af.tensor(rng.standard_normal((4, 6)), dtype="float64", requires_grad=True)
    # eval mode, no activation: the trunk is affine, so f(2x) - f(x) = f(x) - f(0)
    zero = af.zeros(4, 6, dtype="float64")
    f = lambda t: trunk(t).numpy()
    np.testing.assert_allclose(f(x * 2.0) - f(x), f(x) - f(zero), rtol=1e-10, atol=1e-12)
    gradcheck(lambda x: trunk.train()(x), [x])


def test_deviation_module_freezes_the_identity_twin(rng):
    af.manual_seed(1)

    def extractor():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    dev = models.DeviationModule(extractor, num_classes=3, feature_dim=4)
    for a, b in zip(dev.face.state_dict().values(), dev.identity.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert all(not p.requires_grad for p in dev.identity.parameters())
    assert not dev.identity.training and not dev.face.training  # face_bn_mode="eval" (HUST)
    x = af.tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    np.testing.assert_allclose(dev.features(x).numpy(), 1e-6, atol=1e-9)  # equal twins: only the +1e-6
    dev.eval()
    np.testing.assert_array_equal(dev.features(x).numpy(), 0)
    dev.train()
    opt = optim.SGD([p for p in dev.parameters() if p.requires_grad], lr=0.5)
    before = {k: v.numpy().copy() for k, v in dev.identity.state_dict().items()}
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(dev(x), af.tensor(np.array([0, 2]))).backward()
        opt.step()
    for k, v in dev.identity.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    assert not np.allclose(dev.face[0].weight.numpy(), dev.identity[0].weight.numpy())
    trained = models.DeviationModule(extractor, 3, 4, face_bn_mode="train").train()
    assert trained.face.training and not trained.identity.training
    sig = models.DeviationModule(extractor, 3, 4, sigmoid=True).eval()
    np.testing.assert_array_equal(sig.features(x).numpy(), 0)
    # from a module instance: it becomes the face twin, a deep copy of it the identity twin
    pretrained = extractor()
    twin = models.DeviationModule(pretrained, 3, 4).eval()
    assert twin.face is pretrained and twin.identity is not pretrained
    np.testing.assert_array_equal(twin.identity[0].weight.numpy(), pretrained[0].weight.numpy())
    assert not twin.identity[0].weight._shares_memory(pretrained[0].weight)
    np.testing.assert_array_equal(twin.features(x).numpy(), 0)


def test_soft_voting_ensemble_matches_decision_soft_vote(rng):
    af.manual_seed(2)
    members = [nn.Linear(5, 3) for _ in range(3)]
    x = af.tensor(rng.standard_normal((4, 5)).astype(np.float32))
    probs = [nn.functional.softmax(m(x), dim=1).numpy() for m in members]
    ens = models.SoftVotingEnsemble(members, weights=[1, 2, 1])
    np.testing.assert_allclose(ens(x).numpy(), decision.soft_vote(probs, [1, 2, 1]), rtol=1e-6)
    np.testing.assert_allclose(models.SoftVotingEnsemble(members)(x).numpy(), np.mean(probs, 0), rtol=1e-6)
    with pytest.raises(ValueError, match="weights must be 3"):
        models.SoftVotingEnsemble(members, weights=[1, 2])


def test_multitask_loss_masks_each_task(rng):
    va_pred = rng.uniform(-1, 1, (6, 2))
    va_true = rng.uniform(-1, 1, (6, 2))
    va_true[[1, 4], 0] = -5.0
    va_true[2, 1] = -5.0
    expr_logits = rng.standard_normal((6, 4))
    expr = np.array([0, -1, 3, 2, -1, 1])
    au_logits = rng.standard_normal((6, 3))
    au = rng.integers(0, 2, (6, 3))
    au[0, 1] = au[5, 2] = -1
    mtl = losses.MultiTaskLoss({"va": "ccc", "expr": "ce", "au": "bce"}, weights={"au": 0.5})
    t = lambda a: af.tensor(a, dtype="float64", requires_grad=True)
    outputs = (t(va_pred), t(expr_logits), t(au_logits))
    terms = mtl(outputs, af.tensor(va_true), af.tensor(expr), af.tensor(au))

    def ccc(x, y):
        mx, my = x.mean(), y.mean()
        return 2 * ((x - mx) * (y - my)).mean() / (x.var() + y.var() + (mx - my) ** 2 + 1e-8)

    expected_va = sum(1 - ccc(va_pred[va_true[:, k] != -5, k], va_true[va_true[:, k] != -5, k]) for k in range(2))
    keep = expr != -1
    logp = expr_logits - np.log(np.exp(expr_logits).sum(1, keepdims=True))
    expected_expr = -logp[keep, expr[keep]].mean()
    valid = au != -1
    bce = np.logaddexp(0, au_logits) - au * au_logits
    expected_au = 0.5 * bce[valid].mean()
    assert terms["va"].item() == pytest.approx(expected_va, rel=1e-10)
    assert terms["expr"].item() == pytest.approx(expected_expr, rel=1e-10)
    assert terms["au"].item() == pytest.approx(expected_au, rel=1e-10)
    (terms["va"] + terms["expr"] + terms["au"]).backward()
    assert np.all(outputs[1].grad.numpy()[~keep] == 0) and np.all(outputs[2].grad.numpy()[~valid] == 0)
    none = mtl((t(va_pred), t(expr_logits), t(au_logits)), af.tensor(va_true), af.tensor(np.full(6, -1)),
               af.tensor(np.full((6, 3), -1)))
    assert none["expr"].item() == 0 and none["au"].item() == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        losses.MultiTaskLoss({"x": "hinge"})
    with pytest.raises(ValueError, match="names tasks that do not exist"):
        losses.MultiTaskLoss({"x": "ce"}, weights={"y": 2})
