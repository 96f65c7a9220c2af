"""The value the forecaster hands to the engine."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Distinct leads whose headroom a forecast remembers (each policy asks for one).
HEADROOM_MEMO_SIZE = 64


@dataclass(frozen=True, eq=False)
class Forecast:
    """Forecast of one series on a regular grid starting at `start`.

    `median[i]` and `upper[i]` are the forecast for the interval starting at
    `start + i * step_seconds`, in the series' own unit (e.g. requests/s).
    `upper` is the calibrated band at `quantile`. `periodicity` names the
    periods found ("daily+weekly", "none", ...) and `note` says why the
    forecast is less than it could be (e.g. no periodicity, so a recent-level
    model), empty when there is nothing to say. `last_value_band` pairs a
    horizon in seconds with the relative band the demand observed now would
    need to cover the demand that far ahead at `quantile` (width relative to
    the value plus `band_floor`, as the forecast's own band), measured on the
    same backtest: what a reactive scaler implicitly relies on. `median_noise`
    is how far the median scatters from one step to the next by noise alone
    (a robust scale of its second differences; 0: unknown), the yardstick a
    predicted rise must clear to count.
    """

    start: float
    step_seconds: float
    median: np.ndarray
    upper: np.ndarray
    quantile: float
    model: str
    fitted_at: float
    periodicity: str = ""
    note: str = ""
    band_floor: float = 0.0
    last_value_band: tuple[tuple[float, float], ...] = ()
    median_noise: float = 0.0
    # last_value_headroom by horizon: the engine asks it for the same lead on every poll.
    _headroom: dict[float, float | None] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    @property
    def end(self) -> float:
        """First instant the forecast no longer covers."""
        return self.start + self.step_seconds * len(self.median)

    def last_value_headroom(self, horizon_seconds: float) -> float | None:
        """Relative band the demand observed now needs `horizon_seconds` ahead, None if unknown.

        Interpolated on log horizon between the calibrated horizons, flat beyond them.
        Below the first (one step of a series held flat within each step, such as an
        hourly trace) the last value is wrong only when a step boundary falls within
        the horizon: when that chance is below 1 - quantile, no band is needed.
        """
        memo = self._headroom
        if horizon_seconds in memo:
            return memo[horizon_seconds]
        value = self._last_value_headroom(horizon_seconds)
        if len(memo) < HEADROOM_MEMO_SIZE:  # a few leads per forecast; tenants may send many
            memo[horizon_seconds] = value
        return value

    def _last_value_headroom(self, horizon_seconds: float) -> float | None:
        known = [(h, w) for h, w in self.last_value_band if math.isfinite(w) and h > 0]
        if not known:
            return None
        if horizon_seconds < known[0][0] and horizon_seconds / known[0][0] < 1.0 - self.quantile:
            return 0.0
        horizons = np.log([h for h, _ in known])
        widths = np.array([w for _, w in known])
        value = float(np.interp(math.log(max(horizon_seconds, 1e-9)), horizons, widths))
        return max(value, 0.0)

    def window(self, t0: float, t1: float) -> slice:
        """Indices of the points whose interval overlaps [t0, t1]."""
        first = max(int((t0 - self.start) // self.step_seconds), 0)
        last = min(int((t1 - self.start) // self.step_seconds), len(self.median) - 1)
        return slice(first, max(last + 1, first))
