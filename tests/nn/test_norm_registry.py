"""The norm registry's metadata: one place for the norm names, the default, and which layers convert into what."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from pickwise.exceptions import InvalidParameterError, UnknownNameError
from pickwise.models import create_model
from pickwise.nn import (
    DEFAULT_NORM,
    ExemplarNorm2d,
    PopulationNorm2d,
    SparseSwitchNorm2d,
    SwitchNorm1d,
    SwitchNorm2d,
    SwitchNorm3d,
    SyncExemplarNorm2d,
    SyncPopulationNorm2d,
    SyncSparseSwitchNorm2d,
    SyncSwitchNorm1d,
    SyncSwitchNorm2d,
    SyncSwitchNorm3d,
    convert_sync_norm,
    create_norm_layer,
    is_batch_norm,
    list_norm_layers,
    norm_layer_info,
    register_norm_layer,
)
from pickwise.nn.norm import registry
from pickwise.nn.norm.convert import convert_norm_layers
from pickwise.nn.norm.registry import (
    conversion_class,
    conversion_target,
    is_convertible_norm,
    is_learned_norm,
    sync_class,
    sync_class_map,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "pickwise"

# Written out by hand from the papers / torch docs, independently of the registrations.
# name: (family, batch_dependent, learned_mixture, convertible, sync, sync_of)
EXPECTED = {
    "bn": ("batch", True, False, False, None, None),
    "gn": ("per-sample", False, False, False, None, None),
    "ln": ("per-sample", False, False, False, None, None),
    "in": ("per-sample", False, False, False, None, None),
    "sn": ("mixture", True, True, True, "syncsn", None),
    "ssn": ("mixture", True, True, True, "syncssn", None),
    "en": ("mixture", True, True, True, "syncen", None),
    "pn": ("population", True, False, True, "syncpn", None),
    "syncsn": ("mixture", True, True, False, None, "sn"),
    "syncssn": ("mixture", True, True, False, None, "ssn"),
    "syncen": ("mixture", True, True, False, None, "en"),
    "syncpn": ("population", True, False, False, None, "pn"),
}


@pytest.fixture
def clean_registry(monkeypatch):
    """Let a test register norm layers without leaking them into other tests."""
    reg = registry._NORM_LAYERS
    monkeypatch.setattr(reg, "_items", dict(reg._items))
    monkeypatch.setattr(reg, "_aliases", dict(reg._aliases))
    return reg


class TestMetadata:
    def test_builtin_names_and_metadata(self):
        assert set(EXPECTED) <= set(list_norm_layers())
        for name, (family, batch_dependent, learned, convertible, sync, sync_of) in EXPECTED.items():
            info = norm_layer_info(name)
            got = (info.family, info.batch_dependent, info.learned_mixture, info.convertible, info.sync, info.sync_of)
            assert got == (family, batch_dependent, learned, convertible, sync, sync_of), name
            assert info.name == name and info.description, name
            assert info.synchronized is (sync_of is not None)

    def test_filters(self):
        assert list_norm_layers(convertible=True) == ["en", "pn", "sn", "ssn"]
        assert list_norm_layers(learned_mixture=True, synchronized=False) == ["en", "sn", "ssn"]
        assert list_norm_layers(synchronized=True) == ["syncen", "syncpn", "syncsn", "syncssn"]
        assert list_norm_layers(batch_dependent=False) == ["gn", "in", "ln"]
        assert list_norm_layers(family="population") == ["pn", "syncpn"]
        assert list_norm_layers("s*", convertible=True) == ["sn", "ssn"]
        # an unfiltered listing is the plain sorted list
        assert list_norm_layers() == sorted(list_norm_layers())

    def test_default_norm_is_batch_norm(self):
        assert DEFAULT_NORM == "bn"
        assert type(create_norm_layer(DEFAULT_NORM, 4)) is nn.BatchNorm2d

    def test_aliases_and_unknown_names(self):
        assert norm_layer_info("Switch_Norm").name == "sn"
        assert norm_layer_info("SyncSwitchNorm2d").name == "syncsn"
        with pytest.raises(UnknownNameError, match="did you mean 'sn'"):
            norm_layer_info("snn")

    def test_variants_by_dims(self):
        assert dict(norm_layer_info("sn").variants) == {1: SwitchNorm1d, 2: SwitchNorm2d, 3: SwitchNorm3d}
        assert dict(norm_layer_info("syncsn").variants) == {
            1: SyncSwitchNorm1d,
            2: SyncSwitchNorm2d,
            3: SyncSwitchNorm3d,
        }
        assert dict(norm_layer_info("bn").variants) == {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
        assert conversion_class("sn", 3) is SwitchNorm3d
        assert conversion_class("en", 1) is None

    def test_sync_map_from_metadata(self):
        assert sync_class_map() == {
            SwitchNorm1d: SyncSwitchNorm1d,
            SwitchNorm2d: SyncSwitchNorm2d,
            SwitchNorm3d: SyncSwitchNorm3d,
            SparseSwitchNorm2d: SyncSparseSwitchNorm2d,
            ExemplarNorm2d: SyncExemplarNorm2d,
            PopulationNorm2d: SyncPopulationNorm2d,
        }
        assert sync_class(SyncSwitchNorm2d) is None
        assert sync_class(nn.BatchNorm2d) is None

    def test_registered_metadata_must_be_well_typed(self, clean_registry):
        with pytest.raises(InvalidParameterError, match="family must be one of"):
            register_norm_layer("x1", nn.BatchNorm2d, family="batchy")
        with pytest.raises(InvalidParameterError, match="batch_dependent must be True, False or None"):
            register_norm_layer("x2", nn.BatchNorm2d, batch_dependent="yes")
        with pytest.raises(InvalidParameterError, match="variants must map spatial dims"):
            register_norm_layer("x3", nn.BatchNorm2d, variants={"1d": nn.BatchNorm1d})
        with pytest.raises(InvalidParameterError, match="sync must be a registered layer name"):
            register_norm_layer("x4", nn.BatchNorm2d, sync=3)
        register_norm_layer("x5", nn.GroupNorm)
        info = norm_layer_info("x5")
        assert (info.family, info.batch_dependent, info.convertible, info.sync) == ("other", None, False, None)


class TestWhichModulesConvert:
    @pytest.mark.parametrize(
        ("module", "batch", "learned"),
        [
            (nn.BatchNorm1d(3), True, False),
            (nn.BatchNorm2d(3), True, False),
            (nn.BatchNorm3d(3), True, False),
            (nn.SyncBatchNorm(3), True, False),
            (nn.GroupNorm(1, 3), False, False),
            (nn.InstanceNorm2d(3), False, False),
            (nn.LayerNorm(3), False, False),
            (SwitchNorm2d(3), False, True),
            (SyncExemplarNorm2d(3), False, True),
            (SwitchNorm2d(3, normalizers=("bn",)), False, False),  # a single normalizer is not a mixture
            (PopulationNorm2d(3), False, False),
        ],
    )
    def test_predicates(self, module, batch, learned):
        assert is_batch_norm(module) is batch
        assert is_learned_norm(module) is learned
        assert is_convertible_norm(module) is (batch or learned)
        assert is_convertible_norm(module, include_learned=False) is batch

    def test_bn_subclass_converts(self):
        class MyBN(nn.BatchNorm2d):
            pass

        model = convert_norm_layers(nn.Sequential(nn.Conv2d(3, 4, 1), MyBN(4)), "sn")
        assert type(model[1]) is SwitchNorm2d

    @pytest.mark.parametrize("target", list_norm_layers(convertible=True))
    def test_every_convertible_target_converts_bn(self, target):
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        out = convert_norm_layers(model, target)
        assert type(out[1]) is norm_layer_info(target).layer

    def test_targets_resolve_aliases_and_reject_the_rest(self):
        assert conversion_target("SwitchNorm").name == "sn"
        model = convert_norm_layers(nn.Sequential(nn.BatchNorm2d(4)), "switch_norm")
        assert type(model[0]) is SwitchNorm2d
        with pytest.raises(InvalidParameterError, match=r"norm must be one of en, pn, sn, ssn; got 'gn' \('gn' is reg"):
            convert_norm_layers(nn.Sequential(nn.BatchNorm2d(4)), "gn")
        with pytest.raises(InvalidParameterError, match="norm must be one of en, pn, sn, ssn; got 3"):
            convert_norm_layers(nn.Sequential(nn.BatchNorm2d(4)), 3)
        with pytest.raises(
            InvalidParameterError, match=r"^finetune: convert_norm must be one of en, pn, sn, ssn; got 'sx' "
        ):
            conversion_target("sx", where="finetune", name="convert_norm")

    def test_missing_dims_variant_names_the_alternatives(self):
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        with pytest.raises(InvalidParameterError, match=r"no en layer for 1-d inputs.*convert to one of sn"):
            convert_norm_layers(model, "en")
        assert type(convert_norm_layers(model, "sn")[1]) is SwitchNorm1d

    def test_user_registered_layer_converts_and_syncs(self, clean_registry):
        """A third-party SN variant registered with its metadata is converted and synchronized like the built-ins."""

        class MySN(SwitchNorm2d):
            pass

        class MySyncSN(SyncSwitchNorm2d):
            pass

        register_norm_layer("mysn", MySN, convertible=True, learned_mixture=True, family="mixture", sync="mysyncsn")
        register_norm_layer("mysyncsn", MySyncSN, learned_mixture=True, family="mixture", sync_of="mysn")
        assert "mysn" in list_norm_layers(convertible=True)
        model = convert_norm_layers(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), "mysn")
        assert type(model[1]) is MySN
        weight = model[1].weight
        model = convert_sync_norm(model)
        assert type(model[1]) is MySyncSN and model[1].weight is weight

    def test_model_conversion_counts(self):
        model = create_model("resnet8")
        bn = sum(map(is_batch_norm, model.modules()))
        assert bn > 0
        converted = convert_norm_layers(model, "sn")
        assert sum(map(is_batch_norm, converted.modules())) == 0
        assert sum(isinstance(m, SwitchNorm2d) for m in converted.modules()) == bn


class TestOnePlace:
    """Source checks that keep the decisions in one place (over the files this package owns)."""

    def _sources(self):
        files = [*sorted((SRC / "nn").rglob("*.py")), SRC / "reproduce" / "norms.py"]
        return {f: f.read_text() for f in files}

    def test_only_the_registry_names_torch_private_batchnorm(self):
        offenders = [str(f) for f, text in self._sources().items() if "_BatchNorm" in text and f.name != "registry.py"]
        assert offenders == []

    def test_no_literal_list_of_convert_targets(self):
        pattern = re.compile(r"""\(\s*["']sn["']\s*,\s*["']ssn["']""")
        offenders = [str(f) for f, text in self._sources().items() if pattern.search(text)]
        assert offenders == []

    def test_docs_table_lists_every_builtin_name(self):
        layers_md = (SRC.parents[1] / "docs" / "layers.md").read_text()
        for name in EXPECTED:
            assert f"`{name}`" in layers_md, name

    def test_error_messages_do_not_name_cli_flags(self):
        """Library messages speak of parameters: no ``--flag`` in any non-docstring string literal of nn/."""
        offenders = []
        for path in sorted((SRC / "nn").rglob("*.py")):
            tree = ast.parse(path.read_text())
            docstrings = set()
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
                    first = node.body[0]
                    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                        docstrings.add(id(first.value))
            for node in ast.walk(tree):
                is_text = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                if is_text and re.search(r"(^|\s)--[a-z]", node.value):
                    offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
        assert offenders == []


def test_convert_keeps_dtype_and_mode_for_every_target():
    for target in list_norm_layers(convertible=True):
        bn = nn.BatchNorm2d(4).double().eval()
        new = convert_norm_layers(nn.Sequential(bn), target)[0]
        assert new.weight.dtype == torch.float64 and not new.training, target
