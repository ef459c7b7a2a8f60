"""The MCU unit plan: the torch planner against a plain-Python reading of the sampling rules, and the numba kernel
against the torch planner (element for element, ties included)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pickwise.tasks.adaseg import unit_plan
from pickwise.tasks.adaseg.contrastive import MCUConfig, MultiLevelContrastiveLoss
from pickwise.tasks.adaseg.unit_plan import PlanInputs, draw_priorities, plan_units, plan_units_torch

CASES = [
    # images, pixels per image, K, bank size, anchors/class, max keys, levels, seed
    (3, 25, 4, 5, 3, 7, [0, 1, 2], 0),
    (2, 16, 3, 4, 50, 256, [0, 1, 2], 1),  # caps above the pool: everything taken
    (4, 36, 5, 3, 2, 4, [1, 2], 2),  # max_keys below the eligible pool: the top scores
    (1, 9, 2, 2, 1, 3, [0], 3),  # one image: no cross keys but the bank
    (3, 20, 6, 4, 4, 5, [2, 0], 4),  # levels in another order
]


def _inputs(images, hw, k, bank, cap, max_keys, levels, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(-1, k + 1, (2 * hw,), generator=g)  # -1 and k: no label
    ys[ys == k] = 255
    yt = torch.randint(0, k + 2, (images * hw,), generator=g)
    yt[yt >= k] = 255
    yt[:hw] = torch.where(yt[:hw] == 0, torch.full_like(yt[:hw], 255), yt[:hw])  # class 0 missing in image 0
    if images > 2:
        yt[2 * hw : 3 * hw] = 255  # an image without unit labels
    bank_count = torch.randint(0, bank + 1, (k,), generator=g)
    bank_ptr = torch.randint(0, bank, (k,), generator=g)
    pri = draw_priorities(ys.numel(), yt.numel(), images, len(levels), k, bank, g)
    if ties:  # coarse priorities: many ties, broken by the lower index in both planners
        pri = tuple(torch.floor(r * 3) / 3 for r in pri)
    return PlanInputs(ys, yt, images, k, bank_count, bank_ptr, bank, cap, max_keys, levels, pri)


def _naive(inputs):
    """The sampling rules of the unit_plan docstring, one element at a time."""
    ys, yt, images, k, bank_count, bank_ptr, bank, cap, max_keys, levels, pri = (
        getattr(inputs, f.name) for f in dataclasses.fields(inputs)
    )
    r_src, r_tgt, r_key, r_enq = pri
    ys, yt = ys.tolist(), yt.tolist()
    hw = len(yt) // images

    def capped(items, group, priority, limit):  # items sorted by (group, priority, index), at most `limit` per group
        order = sorted(items, key=lambda i: (group(i), float(priority(i)), i))
        out, seen = [], {}
        for i in order:
            seen[group(i)] = seen.get(group(i), 0) + 1
            if seen[group(i)] <= limit:
                out.append(i)
        return out

    src_sel = capped([p for p in range(len(ys)) if 0 <= ys[p] < k], lambda p: ys[p], lambda p: r_src[p], cap)
    tgt_sel = capped([p for p in range(len(yt)) if 0 <= yt[p] < k], lambda p: (p // hw, yt[p]), lambda p: r_tgt[p], cap)
    ia = [p // hw for p in tgt_sel]
    bank_slots = [c * bank + s for c in range(k) for s in range(int(bank_count[c]))]
    na = len(tgt_sel)
    pool = (
        [("t", p, yt[p], p) for p in tgt_sel]
        + [("b", s, s // bank, len(yt) + s) for s in bank_slots]
        + [("s", q, ys[q], len(yt) + k * bank + q) for q in src_sel]
    )
    units = []
    for li, lv in enumerate(levels):
        for img in range(images):
            if img not in ia:
                continue
            elig = []
            for j, (kind, _, _, _) in enumerate(pool):
                own = j < na and ia[j] == img
                if (
                    (lv == 0 and own)
                    or (lv == 1 and ((kind == "t" and not own) or kind == "b"))
                    or (lv == 2 and kind == "s")
                ):
                    elig.append(j)
            if not elig:
                continue
            best = sorted(elig, key=lambda j: (-float(r_key[li * images + img, pool[j][3]]), j))[:max_keys]
            units.append((img, lv, sorted(best)))
    pairs = set()
    for u, (img, _, keys) in enumerate(units):
        anchors = [a for a in range(na) if ia[a] == img]
        for row, a in enumerate(anchors):
            for col, key in enumerate(keys):
                if pool[key][2] == yt[tgt_sel[a]] and key != a:
                    pairs.add((u, row, col))
    enq = capped(list(range(na)), lambda a: yt[tgt_sel[a]], lambda a: r_enq[tgt_sel[a]], bank)
    slots, rank = [], {}
    for a in enq:
        c = yt[tgt_sel[a]]
        slots.append(c * bank + (int(bank_ptr[c]) + rank.get(c, 0)) % bank)
        rank[c] = rank.get(c, 0) + 1
    return src_sel, tgt_sel, bank_slots, units, pairs, enq, slots


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_torch_plan_follows_the_sampling_rules(case, ties):
    args = _inputs(*case, ties=ties)
    plan = plan_units_torch(args)
    src_sel, tgt_sel, bank_slots, units, pairs, enq, slots = _naive(args)
    assert plan.src_sel.tolist() == src_sel
    assert plan.tgt_sel.tolist() == tgt_sel
    assert plan.bank_slots.tolist() == bank_slots
    got_units = [
        (int(i), int(lv), [int(x) for x in keys if x >= 0])
        for i, lv, keys in zip(plan.unit_image, plan.unit_level, plan.unit_keys)
    ]
    assert got_units == units
    n, m = plan.row_y.shape[1], plan.unit_keys.shape[1]
    flat = plan.pair_flat.tolist()
    assert flat == sorted(flat)  # by anchor slot, then key column
    assert {(f // (n * m), f // m % n, f % m) for f in flat} == pairs and len(flat) == len(pairs)
    assert torch.equal(plan.pos_count, torch.bincount(plan.pair_anchor, minlength=plan.row_y.numel()))
    assert plan.enq_anchor.tolist() == enq and plan.enq_slot.tolist() == slots


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_numba_plan_equals_the_torch_plan(case, ties):
    pytest.importorskip("numba")
    args = _inputs(*case, ties=ties)
    fast, ref = plan_units(args, use_numba=True), plan_units(args, use_numba=False)
    for f in dataclasses.fields(ref):
        a, b = getattr(fast, f.name), getattr(ref, f.name)
        assert a.dtype == b.dtype and torch.equal(a, b), f.name


def test_empty_batches_plan_no_units():
    for use_numba in [False, True] if unit_plan.numba_planner_available() else [False]:
        ys, yt = torch.full((8,), 255), torch.full((2 * 4,), 255)
        pri = draw_priorities(8, 8, 2, 3, 3, 2, torch.Generator().manual_seed(0))
        zeros = torch.zeros(3, dtype=torch.long)
        plan = plan_units(PlanInputs(ys, yt, 2, 3, zeros, zeros, 2, 4, 5, [0, 1, 2], pri), use_numba=use_numba)
        assert plan.unit_keys.shape[0] == 0 and plan.pair_flat.numel() == 0 and plan.enq_anchor.numel() == 0


def test_module_gives_the_same_loss_and_gradients_with_either_planner(monkeypatch):
    pytest.importorskip("numba")
    torch.manual_seed(0)
    k, d = 5, 8
    fs, ft = torch.randn(2, d, 6, 6, dtype=torch.float64), torch.randn(3, d, 6, 6, dtype=torch.float64)
    ls, lt = torch.randint(0, k, (2, 6, 6)), torch.randint(0, k + 3, (3, 6, 6))
    lt[lt >= k] = 255
    results = []
    for kernel in (unit_plan._kernel(), None):
        monkeypatch.setattr(unit_plan, "_KERNEL", kernel)
        mod = MultiLevelContrastiveLoss(k, d, MCUConfig(bank_size=4, anchors_per_class=3, max_keys=6)).double()
        g = torch.Generator().manual_seed(1)
        mod(fs, ls, ft, lt, generator=g)  # fill the bank and the centres
        a, b = fs.clone().requires_grad_(True), ft.clone().requires_grad_(True)
        loss, _ = mod(a, ls, b, lt, generator=g)
        loss.backward()
        results.append((loss.detach(), a.grad, b.grad, dict(mod.state_dict())))
    (l1, ga1, gb1, s1), (l2, ga2, gb2, s2) = results
    assert torch.equal(l1, l2) and torch.equal(ga1, ga2) and torch.equal(gb1, gb2)
    for name in s1:
        assert torch.equal(s1[name], s2[name]), name


def test_use_numba_true_without_numba_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(unit_plan, "_KERNEL", None)
    monkeypatch.setattr(unit_plan, "_TRIED", True)
    args = _inputs(*CASES[0])
    with pytest.raises(RuntimeError, match="pip install"):
        plan_units(args, use_numba=True)
    assert plan_units(args).unit_keys.shape == plan_units_torch(args).unit_keys.shape  # falls back to torch
