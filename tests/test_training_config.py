"""Typed configs and dotted overrides: every value checked against the exact expected one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from rnnkit.models import ClassifierConfig
from rnnkit.training.config import (
    ConfigError,
    OptimConfig,
    TrainerConfig,
    apply_overrides,
    from_dict,
    keys,
    parse_overrides,
    parse_value,
    to_dict,
)


@dataclass
class Data:
    size: int = 3
    rate: float = 0.5
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    shape: tuple[int, ...] = (1, 2)
    order: tuple[int, int, int] = (3, 0, 2)


@dataclass
class Run:
    data: Data = field(default_factory=Data)
    model: ClassifierConfig = field(
        default_factory=lambda: ClassifierConfig(num_classes=2, input_size=4)
    )
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@pytest.mark.parametrize(
    ("text", "tp", "expected"),
    [
        ("12", int, 12),
        ("-1", int, -1),
        ("2.5e-3", float, 0.0025),
        ("7", float, 7.0),
        ("TRUE", bool, True),
        ("off", bool, False),
        ("hello", str, "hello"),
        ("b", Literal["a", "b"], "b"),
        ("none", int | None, None),
        ("4", int | None, 4),
        ("1,2,3", tuple[int, ...], (1, 2, 3)),
        ("(1, 0, 2)", tuple[int, int, int], (1, 0, 2)),
    ],
)
def test_parse_value_gives_the_exact_value(text, tp, expected):
    value = parse_value("k", text, tp)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "tp", "message"),
    [
        ("abc", int, r"k expects an int, got 'abc'"),
        ("1.5", int, r"k expects an int, got '1.5'"),
        ("nan", float, r"k expects a finite float"),
        ("maybe", bool, r"k expects a bool \(true or false\), got 'maybe'"),
        ("c", Literal["a", "b"], r"k expects one of 'a', 'b', got 'c'"),
        ("1,2", tuple[int, int, int], r"k expects 3 ints, got '1,2'"),
    ],
)
def test_parse_value_rejects_with_expected_and_got(text, tp, message):
    with pytest.raises(ConfigError, match=message):
        parse_value("k", text, tp)


def test_parse_overrides_accepts_both_spellings():
    got = parse_overrides(["--a.b=1", "--c", "x y", "--d.e=f=g"])
    assert got == {"a.b": "1", "c": "x y", "d.e": "f=g"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a.b=1"], r"expected an override such as --model.hidden_size=256, got 'a.b=1'"),
        (["--a.b"], r"override '--a.b' has no value"),
        (["--a=1", "--a=2"], r"config key 'a' is given twice"),
    ],
)
def test_parse_overrides_rejects(args, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides(args)


def test_apply_overrides_sets_exactly_the_named_keys():
    base = Run()
    new = apply_overrides(
        base,
        {
            "data.size": "9",
            "data.limit": "none",
            "data.shape": "4,5,6",
            "model.encoder.hidden_size": "17",
            "model.encoder.cell": "gru",
            "model.encoder.checkpoint": "25",
            "trainer.max_minutes": "2.5",
            "optim.name": "sgd",
        },
    )
    expected = to_dict(base)
    expected["data"].update(size=9, limit=None, shape=[4, 5, 6])
    expected["model"]["encoder"].update(hidden_size=17, cell="gru", checkpoint=25)
    expected["trainer"]["max_minutes"] = 2.5
    expected["optim"]["name"] = "sgd"
    assert to_dict(new) == expected
    assert to_dict(base)["data"]["size"] == 3  # the original is untouched


def test_round_trip_through_json_dict():
    cfg = apply_overrides(Run(), {"data.order": "1,1,1", "model.pooling": "mean"})
    again = from_dict(Run, to_dict(cfg))
    assert again == cfg
    assert again.data.order == (1, 1, 1)  # tuples come back as tuples, not lists


def test_encoder_type_switch_resets_to_the_new_types_defaults():
    from rnnkit.models.encoder import encoder_config_from_dict

    cfg = apply_overrides(Run(), {"model.encoder.type": "tcn", "model.encoder.kernel_size": "5"})
    default_tcn = encoder_config_from_dict({"type": "tcn"})
    assert type(cfg.model.encoder) is type(default_tcn)
    expected = {"type": "tcn", **dataclasses.asdict(default_tcn), "kernel_size": 5}
    assert to_dict(cfg)["model"]["encoder"] == expected
    assert "model.encoder.kernel_size" in keys(cfg)
    assert "model.encoder.cell" not in keys(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.hiden_size": "3"}, r"unknown config key 'model.hiden_size': did you mean "
         r"'model.encoder.hidden_size'\?"),
        ({"trainer.maxsteps": "3"}, r"did you mean 'trainer.max_steps'\?"),
        ({"data.zzz": "3"}, r"unknown config key 'data.zzz'; known keys: data.flag"),
        ({"trainer.max_steps": "0"}, r"trainer.max_steps must be -1 or >= 1"),
        ({"trainer.batch_size": "5", "trainer.devices": "2"},
         r"trainer.batch_size must be divisible by devices"),
        ({"model.encoder.cell": "lstmm"}, r"encoder.cell must be one of .*got 'lstmm'"),
        ({"model.encoder.type": "transformer"}, r"encoder type must be one of"),
        ({"optim.name": "adamm"}, r"optim.name expects one of 'adam', 'adamw', 'sgd', got "
         r"'adamm' \(did you mean 'adam'\?\)"),
    ],
)  # fmt: skip
def test_bad_overrides_name_the_key_and_what_was_expected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Run(), overrides)


def test_from_dict_rejects_unknown_and_mistyped_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'data.sise': did you mean"):
        from_dict(Run, {"data": {"sise": 3}})
    with pytest.raises(ConfigError, match=r"data.size expects int, got '3'"):
        from_dict(Run, {"data": {"size": "3"}})
    with pytest.raises(ConfigError, match=r"data.flag expects bool, got 1"):
        from_dict(Run, {"data": {"flag": 1}})
