"""The chart's ``warmStart`` values: on by default, its rate passed to ``baseguard run`` as rendered."""

from __future__ import annotations

import pytest
from support.chart import render

from controller.cli.commands.run import config_from
from controller.cli.main import build_parser


def args_of(values: dict[str, object]) -> list[str]:
    [main] = render(values).one("Deployment")["spec"]["template"]["spec"]["containers"]
    args: list[str] = main["args"]
    return args


def test_warm_start_is_on_by_default_and_its_rate_reaches_the_settings() -> None:
    args = args_of({"warmStart": {"imagesPerSecond": 2.5}})
    assert "--warm-start" in args and "--warm-start-rate=2.5" in args
    config = config_from(build_parser().parse_args([*args, "--identity", "pod-a"]))
    assert (config.warm_start, config.warm_start_rate) == (True, 2.5)


def test_warm_start_off() -> None:
    assert not any(a.startswith("--warm-start") for a in args_of({"warmStart": {"enabled": False}}))


def test_a_rate_of_zero_is_refused_by_the_schema() -> None:
    with pytest.raises(Exception, match=r"imagesPerSecond|exclusiveMinimum|minimum"):
        render({"warmStart": {"imagesPerSecond": 0}})


def test_the_command_line_refuses_a_rate_of_zero() -> None:
    from controller.errors import InputError

    args = args_of({})
    with pytest.raises(InputError, match="--warm-start-rate must be more than 0"):
        config_from(build_parser().parse_args([*args, "--identity", "pod-a", "--warm-start-rate", "0"]))
