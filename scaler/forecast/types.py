"""The value the forecaster hands to the engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Forecast:
    """Forecast of one series on a regular grid starting at `start`.

    `median[i]` and `upper[i]` are the forecast for the interval starting at
    `start + i * step_seconds`, in the series' own unit (e.g. requests/s).
    `upper` is the calibrated band at `quantile`. `periodicity` names the
    periods found ("daily+weekly", "none", ...) and `note` says why the
    forecast is less than it could be (e.g. no periodicity, so a recent-level
    model), empty when there is nothing to say.
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

    @property
    def end(self) -> float:
        """First instant the forecast no longer covers."""
        return self.start + self.step_seconds * len(self.median)

    def window(self, t0: float, t1: float) -> slice:
        """Indices of the points whose interval overlaps [t0, t1]."""
        first = max(int((t0 - self.start) // self.step_seconds), 0)
        last = min(int((t1 - self.start) // self.step_seconds), len(self.median) - 1)
        return slice(first, max(last + 1, first))
