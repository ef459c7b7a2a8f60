"""Multi-level contrastive units: InfoNCE and centre contrast vs naive float64 loops, gradcheck, missing classes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pickwise.tasks.adaseg.contrastive import (
    MCUConfig,
    MultiLevelContrastiveLoss,
    cap_per_class,
    centre_contrast,
    class_centres,
    correlation_weights,
    downsample_labels,
    pixel_info_nce,
)


def _naive_pp(za, ya, zk, yk, tau, w, same):
    total, anchors = 0.0, 0
    for i in range(len(ya)):
        pos = [p for p in range(len(yk)) if yk[p] == ya[i] and not (same and p == i)]
        neg = [n for n in range(len(yk)) if yk[n] != ya[i]]
        if not pos:
            continue
        acc = 0.0
        for p in pos:
            sp = math.exp(float(za[i] @ zk[p]) / tau)
            sn = sum(float(w[ya[i], yk[n]]) * math.exp(float(za[i] @ zk[n]) / tau) for n in neg)
            acc += -math.log(sp / (sp + sn))
        total += acc / len(pos)
        anchors += 1
    return total / anchors if anchors else 0.0


def _naive_cc(cu, pu, cv, pv, tau, w):
    terms = []
    for k in range(len(pu)):
        if not (pu[k] and pv[k]):
            continue
        num = math.exp(float(cu[k] @ cv[k]) / tau)
        den = sum(
            (1.0 if j == k else float(w[k, j])) * math.exp(float(cu[k] @ cv[j]) / tau) for j in range(len(pv)) if pv[j]
        )
        terms.append(-math.log(num / den))
    return sum(terms) / len(terms) if terms else 0.0


def _data(n=12, m=10, d=5, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    za = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    zk = F.normalize(torch.randn(m, d, generator=g, dtype=torch.float64), dim=1)
    ya = torch.randint(0, k, (n,), generator=g)
    yk = torch.randint(0, k, (m,), generator=g)
    w = correlation_weights(torch.rand(k, k, generator=g, dtype=torch.float64), alpha=1.5)
    return za, ya, zk, yk, w


def test_pixel_info_nce_matches_naive_loop():
    za, ya, zk, yk, w = _data()
    for tau in (0.1, 0.5):
        got = pixel_info_nce(za, ya, zk, yk, tau, w)
        assert abs(got.item() - _naive_pp(za, ya, zk, yk, tau, w, False)) < 1e-9
        got_same = pixel_info_nce(za, ya, za, ya, tau, w, same=True)
        assert abs(got_same.item() - _naive_pp(za, ya, za, ya, tau, w, True)) < 1e-9
    ones = torch.ones_like(w)
    assert abs(pixel_info_nce(za, ya, zk, yk, 0.2).item() - _naive_pp(za, ya, zk, yk, 0.2, ones, False)) < 1e-9


def test_centre_contrast_matches_naive_loop_with_missing_classes():
    za, ya, zk, yk, w = _data(k=5)
    ya[ya == 3] = 0  # class 3 missing on the anchor side, 4 possibly elsewhere
    yk[yk == 1] = 2  # class 1 missing on the key side
    cu, pu = class_centres(za, ya, 5)
    cv, pv = class_centres(zk, yk, 5)
    got = centre_contrast(cu, pu, cv, pv, 0.1, w)
    assert abs(got.item() - _naive_cc(cu, pu, cv, pv, 0.1, w)) < 1e-9
    # centres: normalised means
    for k in range(5):
        if pu[k]:
            torch.testing.assert_close(cu[k], F.normalize(za[ya == k].mean(0), dim=0))


def test_gradcheck_info_nce_and_centre_contrast():
    za, ya, zk, yk, w = _data(n=6, m=5, d=3, k=3, seed=1)
    za.requires_grad_(True)
    zk.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: pixel_info_nce(a, ya, b, yk, 0.3, w), (za, zk))
    assert torch.autograd.gradcheck(lambda a: pixel_info_nce(a, ya, a, ya, 0.3, w, same=True), (za,))
    cu = F.normalize(torch.randn(3, 3, dtype=torch.float64), dim=1).requires_grad_(True)
    cv = F.normalize(torch.randn(3, 3, dtype=torch.float64), dim=1).requires_grad_(True)
    present = torch.tensor([True, False, True])
    assert torch.autograd.gradcheck(
        lambda a, b: centre_contrast(a, present, b, torch.ones(3, dtype=torch.bool), 0.3, w), (cu, cv)
    )


def test_no_positive_or_no_class_gives_exact_zero_and_finite_grad():
    z = F.normalize(torch.randn(4, 3), dim=1).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3])  # every anchor alone in its class
    loss = pixel_info_nce(z, y, z, y, 0.1, same=True)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(z.grad).all()
    cu, pu = class_centres(z.detach(), y, 6)
    assert centre_contrast(cu, pu, cu, torch.zeros(6, dtype=torch.bool), 0.1).item() == 0.0


def test_module_handles_missing_classes_and_updates_state():
    torch.manual_seed(0)
    k, d = 4, 6
    mod = MultiLevelContrastiveLoss(
        k, d, MCUConfig(bank_size=5, anchors_per_class=3, max_keys=7, correlation="confusion")
    )
    fs = torch.randn(2, d, 4, 4, requires_grad=True)
    ft = torch.randn(2, d, 4, 4, requires_grad=True)
    ls = torch.randint(0, 2, (2, 4, 4))  # classes 2, 3 absent from the source
    lt = torch.full((2, 4, 4), 255)
    loss, parts = mod(fs, ls, ft, lt, probs_src=torch.softmax(torch.randn(2, k, 4, 4), 1))
    assert loss.item() == 0.0  # no target labels: nothing to contrast, and no NaN
    loss.backward()
    lt[0, :2] = 3
    lt[1, 2:] = 1
    loss, parts = mod(fs, ls, ft, lt)
    assert (
        torch.isfinite(loss)
        and loss.item() > 0
        and set(parts) == {f"{a}_{b}" for a in ("cc", "pp") for b in ("intra", "cross", "domain")}
    )
    assert mod.seen_src.tolist() == [1, 1, 0, 0] and mod.seen_tgt.tolist() == [0, 1, 0, 1]
    assert mod.bank_count.tolist() == [0, 3, 0, 3]  # the capped anchors (3 per class and image) enter the bank
    mod(fs, ls, ft, lt)
    assert mod.bank_count.tolist() == [0, 5, 0, 5]  # capped at bank_size
    assert torch.allclose(mod.centres_tgt[1].norm(), torch.tensor(1.0))
    assert (mod.confusion[:2].sum(1) > 0).all() and (mod.confusion[2:] == 0).all()


def test_cap_per_class_and_downsample_labels():
    y = torch.tensor([0] * 10 + [1] * 2 + [3] * 5)
    idx = cap_per_class(y, 4, torch.Generator().manual_seed(0))
    assert torch.bincount(y[idx], minlength=4).tolist() == [4, 2, 0, 4] and len(set(idx.tolist())) == 10
    lab = torch.tensor([[[0, 0, 1, 2], [0, 255, 1, 2], [3, 3, 2, 2], [3, 3, 2, 2]]])
    out = downsample_labels(lab, (2, 2), 4, min_ratio=0.75)
    assert out.tolist() == [[[0, 255], [3, 2]]]  # 3/4 zeros kept; a 2/4 tie -> ignore


def test_sparse_downsample_keeps_single_active_pixels():
    lab = torch.full((1, 4, 4), 255)
    lab[0, 0, 1] = 2  # one labelled pixel in the top-left cell
    lab[0, 2, 2], lab[0, 3, 3] = 1, 0  # a disagreeing pair in the bottom-right cell
    dense = downsample_labels(lab, (2, 2), 3)
    sparse = downsample_labels(lab, (2, 2), 3, sparse=True)
    assert dense.tolist() == [[[255, 255], [255, 255]]]  # dense voting drops sparse active labels
    assert sparse.tolist() == [[[2, 255], [255, 255]]]


def test_self_index_excludes_sampled_self_pairs():
    za, ya, _, _, w = _data(n=9, k=3, seed=4)
    sel = torch.tensor([7, 0, 3, 5])
    got = pixel_info_nce(za, ya, za[sel], ya[sel], 0.2, w, self_index=sel)
    total, anchors = 0.0, 0
    for i in range(9):  # naive: positives are sampled keys of the same class that are not the anchor itself
        pos = [j for j in range(4) if ya[sel[j]] == ya[i] and int(sel[j]) != i]
        neg = [j for j in range(4) if ya[sel[j]] != ya[i]]
        if not pos:
            continue
        sn = sum(float(w[ya[i], ya[sel[n]]]) * math.exp(float(za[i] @ za[sel[n]]) / 0.2) for n in neg)
        acc = 0.0
        for p in pos:
            sp = math.exp(float(za[i] @ za[sel[p]]) / 0.2)
            acc += -math.log(sp / (sp + sn))
        total += acc / len(pos)
        anchors += 1
    assert abs(got.item() - total / anchors) < 1e-9


def test_batched_units_equal_the_single_unit_functions():
    from pickwise.tasks.adaseg.contrastive import _batched_centre_contrast, _batched_pixel_nce

    units = []
    for seed, (n, m) in enumerate([(7, 5), (3, 9), (6, 6)]):
        za, ya, zk, yk, w = _data(n=n, m=m, d=4, k=3, seed=10 + seed)
        si = torch.arange(m) if seed == 2 else None
        if seed == 2:
            zk, yk = za, ya
        units.append((za, ya, zk, yk, si))
    for tau in (0.1, 0.01):  # the exp fast path and the logsumexp path
        got = _batched_pixel_nce(units, tau, w)
        want = torch.stack([pixel_info_nce(u[0], u[1], u[2], u[3], tau, w, self_index=u[4]) for u in units])
        torch.testing.assert_close(got, want)
    cu = F.normalize(torch.randn(2, 3, 4, dtype=torch.float64), dim=2)
    cv = F.normalize(torch.randn(2, 3, 4, dtype=torch.float64), dim=2)
    pu = torch.tensor([[True, False, True], [False, False, False]])
    pv = torch.tensor([[True, True, True], [True, False, True]])
    got = _batched_centre_contrast(cu, pu, cv, pv, 0.2, w)
    want = torch.stack([centre_contrast(cu[i], pu[i], cv[i], pv[i], 0.2, w) for i in range(2)])
    torch.testing.assert_close(got, want)


def test_hand_written_backward_matches_autograd_of_the_reference():
    from pickwise.tasks.adaseg.contrastive import _batched_pixel_nce

    specs = [(7, 5, None), (3, 9, None), (6, 6, "self")]
    leaves, units = [], []
    for seed, (n, m, kind) in enumerate(specs):
        za, ya, zk, yk, w = _data(n=n, m=m, d=4, k=3, seed=20 + seed)
        za = za.clone().requires_grad_(True)
        zk = za if kind == "self" else zk.clone().requires_grad_(True)
        yk = ya if kind == "self" else yk
        leaves += [za] if kind == "self" else [za, zk]
        units.append((za, ya, zk, yk, torch.arange(n) if kind == "self" else None))
    coef = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64)
    got = torch.autograd.grad((_batched_pixel_nce(units, 0.2, w) * coef).sum(), leaves)
    ref_loss = sum(c * pixel_info_nce(u[0], u[1], u[2], u[3], 0.2, w, self_index=u[4]) for c, u in zip(coef, units))
    want = torch.autograd.grad(ref_loss, leaves)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r)
    a = F.normalize(torch.randn(2, 4, 3, dtype=torch.float64), dim=2).requires_grad_(True)
    k = F.normalize(torch.randn(2, 5, 3, dtype=torch.float64), dim=2).requires_grad_(True)
    ya = torch.tensor([[0, 1, 1, -1], [2, 0, 0, 1]])
    ky = torch.tensor([[1, 0, 1, 2, -2], [0, 0, 2, -2, -2]])
    self_row = torch.full((2, 5), -1)
    from pickwise.tasks.adaseg.contrastive import _pixel_nce_padded

    assert torch.autograd.gradcheck(lambda x, y: _pixel_nce_padded(x, ya, y, ky, self_row, 0.3, w), (a, k))


@pytest.mark.parametrize("correlation", ["centre", "confusion", "none"])
def test_module_loss_equals_per_unit_reference(monkeypatch, correlation):
    import pickwise.tasks.adaseg.contrastive as mcu

    torch.manual_seed(3)
    k, d = 5, 6  # class 4 never occurs: the unit tables must still be K wide
    cfg = MCUConfig(bank_size=6, anchors_per_class=3, max_keys=7, alpha=0.8, correlation=correlation)
    mod = MultiLevelContrastiveLoss(k, d, cfg).double()
    fs, ft = torch.randn(2, d, 5, 5, dtype=torch.float64), torch.randn(3, d, 5, 5, dtype=torch.float64)
    ls, lt = torch.randint(0, k - 1, (2, 5, 5)), torch.randint(0, k - 1, (3, 5, 5))
    lt[2] = 255  # an image without unit labels
    probs = torch.softmax(torch.randn(2, k, 5, 5, dtype=torch.float64), 1)
    mod(fs, ls, ft, lt, probs_src=probs, generator=torch.Generator().manual_seed(0))  # fill bank, EMA, confusion
    captured = {}
    original = mcu._sample_units

    def spy(*args, **kwargs):
        captured["units"] = original(*args, **kwargs)
        return captured["units"]

    monkeypatch.setattr(mcu, "_sample_units", spy)
    w = mod.weights().clone() if correlation != "none" else torch.ones(k, k, dtype=torch.float64)
    ema = {"tgt": (mod.centres_tgt.clone(), mod.seen_tgt > 0), "src": (mod.centres_src.clone(), mod.seen_src > 0)}
    loss, parts = mod(fs, ls, ft, lt, generator=torch.Generator().manual_seed(1), update=False)
    u = captured["units"]
    per_level = {lv: ([], []) for lv in mcu.LEVELS}
    for unit in range(u.unit_keys.shape[0]):
        level, image = mcu.LEVELS[int(u.unit_level[unit])], int(u.unit_image[unit])
        za, ya = u.za[u.ia == image], u.ya[u.ia == image]
        keys = u.unit_keys[unit][u.unit_keys[unit] >= 0]
        kz, ky = u.pool_z[keys], u.pool_y[keys]
        own = torch.nonzero(u.ia == image).flatten()
        self_index = torch.tensor([int((own == key).nonzero()) if key in own else -1 for key in keys.tolist()])
        per_level[level][1].append(pixel_info_nce(za, ya, kz, ky, cfg.tau, w, self_index=self_index))
        cu, pu = class_centres(za, ya, k)
        if level == "intra":
            cv, pv = ema["tgt"]
        else:
            cv, pv = class_centres(kz, ky, k)
            ec, ep = ema["tgt" if level == "cross" else "src"]
            cv, pv = torch.where(pv[:, None], cv, ec), pv | ep
        per_level[level][0].append(centre_contrast(cu, pu, cv, pv, cfg.tau, w))
    assert {int(i) for i in u.unit_image} == {0, 1}  # the unlabelled image has no unit
    total = 0.0
    for level, (cc, pp) in per_level.items():
        cc_mean, pp_mean = torch.stack(cc).mean(), torch.stack(pp).mean()
        torch.testing.assert_close(parts[f"cc_{level}"], cc_mean)
        torch.testing.assert_close(parts[f"pp_{level}"], pp_mean)
        total = total + cfg.lambda_cc * cc_mean + cfg.lambda_pp * pp_mean
    torch.testing.assert_close(loss, total)
    # sampling rules: keys per unit capped; intra keys from the own image, cross from others or the bank, domain source
    na, nb = u.za.shape[0], int(mod.bank_count.sum())
    for unit in range(u.unit_keys.shape[0]):
        keys = u.unit_keys[unit][u.unit_keys[unit] >= 0]
        assert 0 < keys.numel() <= cfg.max_keys
        level, image = mcu.LEVELS[int(u.unit_level[unit])], int(u.unit_image[unit])
        if level == "intra":
            assert (keys < na).all() and (u.ia[keys] == image).all()
        elif level == "cross":
            target = keys[keys < na]
            assert (u.ia[target] != image).all() and (keys < na + nb).all()
        else:
            assert (keys >= na + nb).all()
