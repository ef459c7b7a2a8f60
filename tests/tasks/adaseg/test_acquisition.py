"""Acquisition strategies: score maps against naive float64 formulas, exact budgets, NMS against a greedy port."""

from __future__ import annotations

import math

import pytest
import torch

from pickwise.exceptions import ConfigError
from pickwise.tasks.adaseg.acquisition import (
    entropy_map,
    get_strategy,
    greedy_select,
    list_strategies,
    margin_map,
    parse_budget,
    region_impurity,
    round_budgets,
    split_budget,
    topk_select,
)


def _logits(b=2, k=4, h=9, w=11, seed=0):
    return torch.randn(b, k, h, w, generator=torch.Generator().manual_seed(seed)) * 2


def test_entropy_and_margin_match_naive_float64():
    logits = _logits(h=4, w=5)
    p = torch.softmax(logits.double(), 1).tolist()
    naive_ent = torch.zeros(2, 4, 5, dtype=torch.float64)
    naive_margin = torch.zeros(2, 4, 5, dtype=torch.float64)
    for b in range(2):
        for y in range(4):
            for x in range(5):
                q = sorted((p[b][c][y][x] for c in range(4)), reverse=True)
                naive_ent[b, y, x] = -sum(v * math.log(v) for v in q)
                naive_margin[b, y, x] = 1 - (q[0] - q[1])
    torch.testing.assert_close(entropy_map(logits).double(), naive_ent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(margin_map(logits).double(), naive_margin, atol=1e-5, rtol=1e-5)


def test_region_impurity_matches_a_window_loop():
    logits = _logits(b=1, k=3, h=6, w=7, seed=1)
    r = 1
    imp, unc = region_impurity(logits, r)
    pred = logits.argmax(1)[0]
    ent = entropy_map(logits)[0].double() / math.log(3)
    for y in range(6):
        for x in range(7):
            ys, xs = slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1)
            win = pred[ys, xs].flatten()
            q = torch.bincount(win, minlength=3).double() / win.numel()
            h = -sum(v * math.log(v) for v in q.tolist() if v > 0) / math.log(3)
            assert imp[0, y, x].item() == pytest.approx(h, abs=1e-5)
            assert unc[0, y, x].item() == pytest.approx(ent[ys, xs].mean().item(), abs=1e-5)


def test_topk_exact_budget_disjoint_and_ties_lowest_index():
    scores = torch.zeros(1, 3, 4)  # all tied
    labelled = torch.zeros(1, 3, 4, dtype=torch.bool)
    labelled[0, 0, 0] = True
    new = topk_select(scores, labelled, 3)
    assert new.sum() == 3 and not (new & labelled).any()
    assert new.flatten().nonzero().flatten().tolist() == [1, 2, 3]  # ties: the lowest free flat indices


def _naive_greedy(score, labelled, k, r):
    """Line-by-line greedy NMS on one image (RIPU PixelSelection's loop, with the same fall-back as ours)."""
    s = score.clone().double()
    s[labelled] = -math.inf
    sup = torch.zeros_like(labelled)
    out = torch.zeros_like(labelled)
    h, w = s.shape
    for _ in range(k):
        cand = ~(labelled | out)
        if not cand.any():
            break
        pool = cand & ~sup if (cand & ~sup).any() else cand
        best, by, bx = -math.inf, None, None
        for y in range(h):
            for x in range(w):
                if pool[y, x] and (by is None or s[y, x] > best):
                    best, by, bx = s[y, x], y, x
        out[by, bx] = True
        sup[max(0, by - r) : by + r + 1, max(0, bx - r) : bx + r + 1] = True
    return out


@pytest.mark.parametrize("radius", [1, 2])
def test_greedy_nms_matches_naive_loop_and_meets_budget(radius):
    scores = torch.rand(2, 7, 8, generator=torch.Generator().manual_seed(3))
    labelled = torch.rand(2, 7, 8, generator=torch.Generator().manual_seed(4)) < 0.2
    budget = torch.tensor([5, 30])  # 30 forces the fall-back past suppression
    got = greedy_select(scores, labelled, budget, radius)
    for b in range(2):
        want = _naive_greedy(scores[b], labelled[b], int(budget[b]), radius)
        assert torch.equal(got[b], want)
    assert got.sum(dim=(1, 2)).tolist() == [5, 30]
    assert not (got & labelled).any()


def test_nms_spreads_picks():
    scores = torch.zeros(1, 10, 10)
    scores[0, 4:7, 4:7] = 1.0  # one hot blob: entropy top-k would take it all
    plain = topk_select(scores, torch.zeros(1, 10, 10, dtype=torch.bool), 4)
    nms = greedy_select(scores, torch.zeros(1, 10, 10, dtype=torch.bool), 4, radius=1)
    ys, xs = nms[0].nonzero().T
    d = (ys[:, None] - ys[None, :]).abs().maximum((xs[:, None] - xs[None, :]).abs())
    assert plain.sum() == nms.sum() == 4
    assert (d + torch.eye(4, dtype=torch.long) * 99).min() > 1  # no two picks within the radius


def test_region_mode_exact_pixel_and_region_counts():
    logits = _logits(b=2, k=3, h=12, w=12, seed=5)
    labelled = torch.zeros(2, 12, 12, dtype=torch.bool)
    labelled[1, :3] = True
    strat = get_strategy("ripu_region", radius=1)
    new = strat(logits, labelled, torch.tensor([20, 13]))
    assert new.sum(dim=(1, 2)).tolist() == [20, 13] and not (new & labelled).any()
    regions = strat(logits, labelled, torch.tensor([3, 3]), count="regions")
    assert (regions.sum(dim=(1, 2)) <= 27).all() and regions.sum(dim=(1, 2))[0] == 27  # 3 disjoint 3x3 squares


@pytest.mark.parametrize("name", ["random", "entropy", "margin", "mcu", "ripu_pixel", "ripu_region"])
def test_every_strategy_spends_exactly_the_budget(name):
    logits = _logits(b=3, k=5, h=8, w=8, seed=6)
    labelled = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(7)) < 0.3
    budget = torch.tensor([0, 7, 12])
    new = get_strategy(name)(logits, labelled, budget, generator=torch.Generator().manual_seed(0))
    assert new.sum(dim=(1, 2)).tolist() == [0, 7, 12]
    assert not (new & labelled).any()


def test_split_budget_matches_naive_water_filling():
    gen = torch.Generator().manual_seed(8)
    for _ in range(20):
        avail = torch.randint(0, 30, (7,), generator=gen)
        total = int(torch.randint(0, int(avail.sum()) + 1, (1,), generator=gen))
        share = split_budget(total, avail)
        naive = [0] * 7
        left = total
        while left:  # one pick at a time to the emptiest image with room, lowest index first
            room = [i for i in range(7) if naive[i] < avail[i]]
            i = min(room, key=lambda j: (naive[j], j))
            naive[i] += 1
            left -= 1
        assert sorted(share.tolist()) == sorted(naive) and int(share.sum()) == total
        assert (share <= avail).all()


def test_budget_parsing_rounds_and_errors():
    assert parse_budget("5000").kind == "pixels" and parse_budget("2.2%").total_pixels(10, 10, 10) == 22
    assert parse_budget("40/img").total_pixels(3, 10, 10) == 120
    assert parse_budget("2reg/img").kind == "regions" and parse_budget("5img").kind == "images"
    assert sum(round_budgets(1001, 3)) == 1001 and max(round_budgets(1001, 3)) - min(round_budgets(1001, 3)) <= 1
    for bad in ("abc", "0", "150%", "2.5img", "-3"):
        with pytest.raises(ConfigError):
            parse_budget(bad)
    with pytest.raises(ConfigError):
        round_budgets(10, 0)
    with pytest.raises(ConfigError, match="only 5 unlabelled"):
        split_budget(6, torch.tensor([2, 3]))
    with pytest.raises(ConfigError, match="unknown acquisition strategy"):
        get_strategy("entropi")
    assert {"random", "entropy", "margin", "mcu", "ripu_pixel", "ripu_region"} <= set(list_strategies())
