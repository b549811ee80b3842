"""`map_in_chunks` arguments (sizes are checked before the flow context, tiles inside a flow)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow

from oxeo_flows import map_in_chunks
from oxeo_flows.errors import ConfigError
from tests.bad_input._expect import cases, expect


def double(x: int) -> int:
    return 2 * x


SIZE_CASES = [
    ("chunk-negative", {"chunk_size": -1}, "chunk_size", "must be a positive integer, got -1"),
    ("chunk-float", {"chunk_size": 1.5}, "chunk_size", "positive integer, got 1.5"),
    ("chunk-bool", {"chunk_size": True}, "chunk_size", "positive integer, got True"),
    ("chunk-nan", {"chunk_size": float("nan")}, "chunk_size", "positive integer, got nan"),
    ("chunk-none", {"chunk_size": None}, "chunk_size", "positive integer, got None"),
    ("in-flight-zero", {"max_in_flight": 0}, "max_in_flight", "positive integer, got 0"),
    ("in-flight-inf", {"max_in_flight": float("inf")}, "max_in_flight", "got inf"),
    ("in-flight-string", {"max_in_flight": "3"}, "max_in_flight", "got '3'"),
    ("in-flight-bool", {"max_in_flight": False}, "max_in_flight", "got False"),
]


@pytest.mark.parametrize(("kwargs", "field", "fix"), cases(SIZE_CASES))
def test_bad_sizes(kwargs: dict[str, Any], field: str, fix: str) -> None:
    expect(ConfigError, lambda: map_in_chunks(double, [1], **kwargs), field, fix)


def test_outside_a_flow_says_where_it_runs() -> None:
    expect(ConfigError, lambda: map_in_chunks(double, [1]), "map_in_chunks", "inside a flow")


TILE_CASES = [
    pytest.param(
        None,
        "tiles",
        "an iterable of tiles",
        id="tiles-none",
    ),
    pytest.param(
        7,
        "tiles",
        "an iterable of tiles",
        id="tiles-int",
    ),
]


@pytest.mark.parametrize(("tiles", "field", "fix"), TILE_CASES)
def test_bad_tiles(prefect_api: str, tiles: Any, field: str, fix: str) -> None:
    @flow
    def bad_input_fanout() -> None:
        map_in_chunks(double, tiles)

    expect(ConfigError, bad_input_fanout, field, fix)
