"""The argument checks shared by pickwise.nn (``pickwise.nn._validation``) and the layers that use them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pickwise.exceptions import InvalidParameterError
from pickwise.nn import (
    DGConv2d,
    ExemplarNorm2d,
    GroupNorm,
    PopulationNorm2d,
    ResourceConstraint,
    SparsestmaxRadiusScheduler,
    SparseSwitchNorm2d,
    SwitchNorm2d,
    SyncSwitchNorm2d,
    effective_num_groups,
    gamma_decay_penalty,
    group_budget,
)
from pickwise.nn._validation import (
    check_float,
    check_int,
    nonnegative_float,
    nonnegative_int,
    one_of,
    positive_float,
    positive_int,
    probability,
)
from pickwise.nn.norm.convert import convert_norm_layers
from pickwise.nn.norm.recalibrate import recalibrate_norm_stats

NAN, INF = float("nan"), float("inf")


class TestHelpers:
    @pytest.mark.parametrize("value", [1, 7, np.int64(3), torch.iinfo(torch.int64).max])
    def test_positive_int_accepts(self, value):
        got = positive_int("f", "n", value)
        assert got == value and type(got) is int

    @pytest.mark.parametrize("value", [0, -1, True, False, 2.0, "3", None, NAN])
    def test_positive_int_rejects(self, value):
        with pytest.raises(InvalidParameterError, match=re.escape(f"f: n must be a positive int; got {value!r}")):
            positive_int("f", "n", value)

    def test_int_variants(self):
        assert nonnegative_int("f", "n", 0) == 0
        with pytest.raises(InvalidParameterError, match=r"f: n must be an int >= 0; got -1"):
            nonnegative_int("f", "n", -1)
        assert check_int("f", "k", 5, odd=True) == 5
        with pytest.raises(InvalidParameterError, match="k must be a positive odd int; got 4"):
            check_int("f", "k", 4, odd=True)
        with pytest.raises(InvalidParameterError, match="k must be an int >= 2; got 1"):
            check_int("f", "k", 1, minimum=2)

    @pytest.mark.parametrize("value", [NAN, INF, -INF, True, "1e-5", None, 0, -1e-9])
    def test_positive_float_rejects(self, value):
        with pytest.raises(InvalidParameterError, match=re.escape(f"f: eps must be a positive float; got {value!r}")):
            positive_float("f", "eps", value)

    def test_float_variants(self):
        assert positive_float("f", "x", 3) == 3.0 and type(positive_float("f", "x", 3)) is float
        assert positive_float("f", "x", np.float32(0.5)) == 0.5
        assert nonnegative_float("f", "x", 0) == 0.0
        with pytest.raises(InvalidParameterError, match=r"x must be a float >= 0; got -0.5"):
            nonnegative_float("f", "x", -0.5)
        assert check_float("f", "x", -3.0, high=0.0) == -3.0
        with pytest.raises(InvalidParameterError, match=r"x must be a float <= 0; got 0.1"):
            check_float("f", "x", 0.1, high=0.0)
        with pytest.raises(InvalidParameterError, match=r"x must be a finite float; got nan"):
            check_float("f", "x", NAN)
        with pytest.raises(InvalidParameterError, match=r"x must be a budget; got -1\. Pass a budget\."):
            check_float("f", "x", -1, low=0.0, expected="a budget", hint="Pass a budget.")

    def test_probability(self):
        assert probability("f", "p", 0) == 0.0 and probability("f", "p", 1) == 1.0
        assert probability("f", "p", None, allow_none=True) is None
        for bad in (1.5, -0.1, NAN, None):
            with pytest.raises(InvalidParameterError, match=r"f: p must be a float in \[0, 1\]; got"):
                probability("f", "p", bad)
        with pytest.raises(InvalidParameterError, match=r"p must be a float in \[0, 1\] or None; got 2"):
            probability("f", "p", 2, allow_none=True)

    def test_one_of(self):
        assert one_of("f", "mode", "a", ("a", "b")) == "a"
        with pytest.raises(
            InvalidParameterError, match=r"f: mode must be one of 'pooled', 'mean_of_var'; got 'poled' "
        ):
            one_of("f", "mode", "poled", ("pooled", "mean_of_var"))
        with pytest.raises(InvalidParameterError, match=r"did you mean 'pooled'\?"):
            one_of("f", "mode", "poled", ("pooled", "mean_of_var"))


class TestLayersUseThem:
    """Values the layers used to let through (NaN, inf, bool) are now rejected with the parameter's name."""

    @pytest.mark.parametrize(
        ("build", "match"),
        [
            (lambda: SwitchNorm2d(True), "SwitchNorm2d: num_features must be a positive int; got True"),
            (lambda: SyncSwitchNorm2d(0), "SyncSwitchNorm2d: num_features must be a positive int; got 0"),
            (lambda: SwitchNorm2d(4, eps=INF), "eps must be a positive float; got inf"),
            (lambda: SwitchNorm2d(4, momentum=NAN), r"momentum must be a float in \[0, 1\] or None; got nan"),
            (lambda: SwitchNorm2d(4, momentum=0.9 + 0.2), "official SN value 0.9"),
            (lambda: ExemplarNorm2d(4, temperature=INF), "temperature must be a positive float; got inf"),
            (lambda: ExemplarNorm2d(4, ratio_hidden=True), "ratio_hidden must be a positive int"),
            (lambda: ExemplarNorm2d(4, kernel_size=4), "kernel_size must be a positive odd int; got 4"),
            (lambda: ExemplarNorm2d(4, descriptor="max"), "descriptor must be one of 'mean_std', 'mean'"),
            (lambda: PopulationNorm2d(4, warmup_steps=-1), "PopulationNorm2d: warmup_steps must be an int >= 0"),
            (lambda: GroupNorm(2.0), "GroupNorm: num_features must be a positive int"),
            (lambda: effective_num_groups(4, 0), "effective_num_groups: num_groups must be a positive int"),
            (lambda: DGConv2d(8, 8, 3, gate_init=NAN), "gate_init must be a positive float; got nan"),
            (lambda: DGConv2d(8, 8, 3, ste="gumbel"), "ste must be one of 'identity', 'clipped'"),
            (lambda: ResourceConstraint(INF), "target must be a positive number; got inf"),
            (lambda: ResourceConstraint(1.0, NAN), "exponent must be a number <= 0"),
            (lambda: group_budget(nn.Sequential(DGConv2d(4, 4, 1)), True), "groups must be a positive int"),
            (lambda: gamma_decay_penalty(nn.Sequential(PopulationNorm2d(2)), NAN), "coeff must be a float >= 0"),
            (lambda: gamma_decay_penalty(nn.Sequential(), 1.0, batch_size=0), "batch_size must be a positive int"),
            (lambda: SparseSwitchNorm2d(4).set_radius(NAN), "set_radius: radius must be a float >= 0; got nan"),
            (lambda: SparseSwitchNorm2d(4).init_mixture("bn", bn_logit_gap=-1), "bn_logit_gap must be a float >= 0"),
            (lambda: SparsestmaxRadiusScheduler(nn.Sequential(), 10, max_radius=INF), "max_radius must be a float"),
            (lambda: recalibrate_norm_stats(nn.BatchNorm2d(2), [], num_batches=0), "num_batches must be a positive"),
            (
                lambda: convert_norm_layers(nn.Sequential(nn.BatchNorm2d(2)), "sn", bn_logit_gap=NAN),
                "convert_norm_layers: bn_logit_gap must be a float >= 0; got nan",
            ),
            (
                lambda: convert_norm_layers(nn.Sequential(nn.BatchNorm2d(2)), "sn", init="bm"),
                r"init must be one of 'bn', 'uniform'; got 'bm' \(did you mean 'bn'\?\)",
            ),
        ],
    )
    def test_rejects_with_parameter_name(self, build, match):
        with pytest.raises(InvalidParameterError, match=match):
            build()

    def test_accepted_values_are_normalized(self):
        m = SwitchNorm2d(np.int64(4), eps=1, momentum=0)
        assert type(m.num_features) is int and m.eps == 1.0 and m.momentum == 0.0
        assert ExemplarNorm2d(4, temperature=2).temperature == 2.0
        assert math.isclose(ResourceConstraint(3).target, 3.0)


def test_only_the_validation_module_spells_out_the_checks():
    """The ``isinstance(x, bool) or not isinstance(x, int)`` idiom lives in one module of pickwise.nn."""
    nn_dir = Path(__file__).resolve().parents[2] / "src" / "pickwise" / "nn"
    pattern = re.compile(r"isinstance\((\w+), bool\) or not isinstance\(\1, \(?(int|float)")
    offenders = [
        f"{path.relative_to(nn_dir)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in sorted(nn_dir.rglob("*.py"))
        if path.name != "_validation.py"
        for text in [path.read_text()]
        for m in pattern.finditer(text)
    ]
    assert offenders == []
