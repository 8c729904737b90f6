"""How often a run's heartbeat goes out."""

from __future__ import annotations

import pytest

from nerd.worker.pulse import heartbeat_interval_s


@pytest.mark.parametrize(
    ("lease_s", "expected_s"), [(0.3, 0.5), (3.0, 1.0), (6.0, 2.0), (30.0, 3.0)]
)
def test_a_heartbeat_goes_out_every_third_of_the_lease_within_bounds(
    lease_s: float, expected_s: float
) -> None:
    assert heartbeat_interval_s(lease_s) == pytest.approx(expected_s)
