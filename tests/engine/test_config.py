import pytest
import yaml

from pickwise.engine.config import (
    RunConfig,
    apply_overrides,
    config_to_dict,
    diff_configs,
    load_yaml_with_bases,
    resolve_config,
)
from pickwise.exceptions import ConfigError


def test_defaults_roundtrip_through_yaml(tmp_path):
    cfg = RunConfig()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    again = resolve_config([path])
    assert config_to_dict(again) == config_to_dict(cfg)


def test_overrides_are_typed():
    cfg = resolve_config(
        overrides=[
            "optim.lr=1e-3",
            "train.epochs=3",
            "data.train_subset=100",
            "schedule.milestones=[1, 2.5]",
            "train.progress=false",
            "model.kwargs.width=2",
            "data.test_subset=null",
        ]
    )
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert isinstance(cfg.train.epochs, int)
    assert cfg.schedule.milestones == [1.0, 2.5]
    assert cfg.train.progress is False
    assert cfg.model.kwargs == {"width": 2}
    assert cfg.data.test_subset is None


def test_base_inheritance_and_override_order(tmp_path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.2\n  momentum: 0.5\nmodel:\n  name: resnet32\n")
    (tmp_path / "leaf.yaml").write_text("_base_: base.yaml\noptim:\n  lr: 0.3\n")
    merged = load_yaml_with_bases(tmp_path / "leaf.yaml")
    assert merged == {"optim": {"lr": 0.3, "momentum": 0.5}, "model": {"name": "resnet32"}}
    cfg = resolve_config([tmp_path / "leaf.yaml"], ["optim.lr=0.4"])
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.model.name) == (0.4, 0.5, "resnet32")


def test_base_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml_with_bases(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lrr=0.1", r"unknown key 'optim.lrr'; did you mean 'optim.lr'"),
        ("train.amp=bf8", r"train.amp must be one of .*did you mean 'bf16'"),
        ("data.batch_size=abc", "data.batch_size must be an integer; got 'abc'"),
        ("data.batch_size=0", "data.batch_size must be >= 1"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("train.progress=maybe", "train.progress must be true or false"),
        ("novalue", "must look like key=value"),
        ("model=3", "unknown key 'model'"),
    ],
)
def test_bad_overrides(override, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(overrides=[override])


def test_bad_yaml_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config([bad])
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        resolve_config([tmp_path / "list.yaml"])
    with pytest.raises(ConfigError, match="file not found"):
        resolve_config([tmp_path / "missing.yaml"])
    (tmp_path / "unk.yaml").write_text("optim:\n  momentun: 0.9\n")
    with pytest.raises(ConfigError, match="did you mean 'optim.momentum'"):
        resolve_config([tmp_path / "unk.yaml"])


def test_diff_configs():
    a = config_to_dict(RunConfig())
    b = config_to_dict(apply_overrides(RunConfig(), ["optim.lr=0.3"]))
    assert diff_configs(a, b) == {"optim.lr": (0.1, 0.3)}


def test_norm_kwargs_override_and_partial():
    import functools

    from pickwise.engine.run import norm_layer_from_config

    cfg = resolve_config(overrides=["model.norm=gn", "model.norm_kwargs.num_groups=4"])
    assert cfg.model.norm_kwargs == {"num_groups": 4}
    layer = norm_layer_from_config(cfg.model)
    assert isinstance(layer, functools.partial) and layer(16).num_groups == 4
    assert norm_layer_from_config(RunConfig().model) == "bn"
