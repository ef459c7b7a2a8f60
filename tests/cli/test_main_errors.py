"""The CLI's error policy: user errors are one line (exit 2); a wrong shape inside pickwise's own layers is a bug
and keeps its traceback; PICKWISE_TRACEBACK=1 shows every traceback."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from pickwise.cli import main as cli_main
from pickwise.exceptions import ShapeError
from pickwise.nn import SwitchNorm2d
from pickwise.selection import logme


def _parser_with(handler):
    def build() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="pickwise")
        sub = parser.add_subparsers(dest="command")
        p = sub.add_parser("boom")
        p.set_defaults(handler=handler)
        return parser

    return build


def _layer_bug(args):
    SwitchNorm2d(4)(torch.zeros(2, 3, 5, 5))  # pickwise feeding its own layer the wrong channel count


def _user_features(args):
    # a user's arrays of mismatched length: the user's error
    logme(np.random.default_rng(0).normal(size=(10, 3)), np.arange(11) % 2)


def test_user_shape_error_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli_main, "build_parser", _parser_with(_user_features))
    monkeypatch.delenv("PICKWISE_TRACEBACK", raising=False)
    assert cli_main.main(["boom"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pickwise: error:") and "\n" not in err


def test_shape_error_inside_a_layer_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(cli_main, "build_parser", _parser_with(_layer_bug))
    monkeypatch.delenv("PICKWISE_TRACEBACK", raising=False)
    with pytest.raises(ShapeError):
        cli_main.main(["boom"])


def test_traceback_on_request(monkeypatch):
    monkeypatch.setattr(cli_main, "build_parser", _parser_with(_user_features))
    monkeypatch.setenv("PICKWISE_TRACEBACK", "1")
    with pytest.raises(ShapeError, match="length|samples|rows|N"):
        cli_main.main(["boom"])
