import math

import pytest

from pickwise.engine.config import ScheduleConfig
from pickwise.engine.schedule import lr_at_step


def test_cosine_endpoints_and_midpoint():
    cfg = ScheduleConfig(name="cosine")
    kw = {"base_lr": 0.1, "steps_per_epoch": 10, "total_steps": 100, "cfg": cfg}
    assert lr_at_step(0, **kw) == pytest.approx(0.1)
    assert lr_at_step(50, **kw) == pytest.approx(0.05)
    assert lr_at_step(100, **kw) == pytest.approx(0.0, abs=1e-12)
    assert lr_at_step(25, **kw) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))


def test_warmup_is_linear_then_peaks():
    cfg = ScheduleConfig(name="constant", warmup_epochs=0.5)
    kw = {"base_lr": 1.0, "steps_per_epoch": 10, "total_steps": 100, "cfg": cfg}
    assert [lr_at_step(s, **kw) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_step_schedule():
    cfg = ScheduleConfig(name="step", milestones=[1, 2], gamma=0.1)
    kw = {"base_lr": 1.0, "steps_per_epoch": 10, "total_steps": 30, "cfg": cfg}
    assert [lr_at_step(s, **kw) for s in (9, 10, 19, 20)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
