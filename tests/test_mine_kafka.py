"""Oracle, end to end: each public log replayed through Kafka into the store, then
`backlight mine --format json`, equals pm4py computed on the log file itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from mine_oracle import LOGS, assert_mine_equals_pm4py, store_config  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.kafka, pytest.mark.shared_data]


@pytest.mark.parametrize("name", list(LOGS))
def test_mine_json_equals_pm4py_on_the_file(store_config: Path, name: str) -> None:  # noqa: F811
    """DFG counts, start/end activities, variants, case durations and mean/median waits per
    edge (to the second) equal pm4py's on the same log file."""
    assert_mine_equals_pm4py(store_config, name)


