"""How a forecast that is on turns into demand to provision for: pure arithmetic.

Three actions (policy key `forecastAction`):

- `ramp` (the default): the demand observed now plus the rise the forecast's
  median predicts over the lead time, r = ceil((demand + rise) / threshold).
  Where the forecast sees no rise (a flat level, a decline, a level it cannot
  predict) this is exactly the reactive recommendation, so a forecast that
  does not help costs nothing; ahead of a predicted ramp the capacity for it
  is asked for one pod start-up early (AHPA's proactive plus reactive, shifted
  by the start-up; AWS's predictive scale-out with dynamic scale-in). The rise
  is measured on the forecast itself, from its value now to its peak over the
  lead time, so that a level that is off by a constant still gives the right
  rise. A predicted jump (the median climbing by more than the band's width
  now, before the noise margin below, so that noise never turns a jump into a
  tide that asks for more) that the observed demand has already partly made
  (it is above the band now: the jump came a little earlier than forecast) is
  counted from the demand instead, so what the demand already shows is not
  asked for twice. A rise counts only
  beyond the median's own noise (`RISE_SIGNIFICANCE` times its step-to-step
  scatter, `Forecast.median_noise`): a median learnt from noisy days wobbles
  around a flat level, and each wobble paid like a real rise tips the HPA's
  tolerance and holds a pod for the scale-down window.
- `floor`: the band's peak over the lead time is a floor at all times (the
  behaviour before `ramp`): it covers the demand's noise too, which pays
  where demand jumps faster than any reaction, and costs wherever the band
  sits above the demand.
- `auto`: the ramp, or the band's peak where the band is sharper than what the
  observed demand itself would need to cover the demand a lead time ahead at
  the same quantile (the last value's band from the same backtest, a gate of
  the forecast by its own skill against the naive forecast): never more than
  observed demand plus that headroom, never less than the ramp.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler.forecast.types import Forecast
from scaler.policy import ForecastAction

# How many times the median's noise a predicted rise must exceed to count: on a flat
# level the difference of two noisy points (sqrt(2) times the noise) passes it about 8 %
# of the time; a real ramp passes it and loses only this margin.
RISE_SIGNIFICANCE = 2.0


@dataclass(frozen=True)
class LeadWindow:
    """The forecast over [now, now + lead]: its value now, its peak and its noise."""

    median_now: float
    upper_now: float
    peak_median: float
    peak_upper: float
    median_noise: float = 0.0

    @property
    def significant_peak(self) -> float:
        """The median's peak less what its noise alone would make (never below its value now)."""
        return max(self.median_now, self.peak_median - RISE_SIGNIFICANCE * self.median_noise)

    @property
    def rise(self) -> float:
        """How much the median climbs over the lead time beyond its noise (0: flat or falls)."""
        return self.significant_peak - self.median_now


def lead_window(forecast: Forecast, now: float, lead: float) -> LeadWindow | None:
    """The forecast over [now, now + lead], or None when it does not cover that span."""
    if forecast.start > now + forecast.step_seconds or forecast.end < now + lead:
        return None
    window = forecast.window(now, now + lead)
    if window.stop <= window.start:
        return None
    # The window is a handful of points: Python's max on a list beats numpy's call overhead,
    # and the simulator calls this once per polling tick.
    median = forecast.median[window].tolist()
    upper = forecast.upper[window].tolist()
    return LeadWindow(median[0], upper[0], max(median), max(upper), forecast.median_noise)


def demand_to_provision(
    action: ForecastAction,
    window: LeadWindow,
    demand: float,
    headroom: float | None = None,
    band_floor: float = 0.0,
) -> float:
    """The demand the forecast asks capacity for, given the demand observed now.

    `headroom` is the relative band the observed demand would need to cover the
    demand a lead time ahead at the forecast's quantile (`band_floor` as in the
    forecast's own band); `auto` without it is `ramp`.
    """
    rise = window.rise
    # A jump is told from a tide by the median's whole climb, before the noise margin:
    # with the margin taken first, more noise could turn a jump into a tide and ask for more.
    climb = window.peak_median - window.median_now
    if climb > window.upper_now - window.median_now and demand > window.upper_now:
        # A predicted jump (a rise beyond the forecast's own uncertainty) that the observed
        # demand, already above the band, has partly made: the rise still to come is
        # counted from the demand, not added to it again. (As demand crosses the band the
        # ask steps from demand + rise down to the jump's peak: by at most the band's width.)
        # The peak itself, not demand + (peak - demand), which rounds a hair below it.
        ramp = max(demand, window.significant_peak)
    else:
        ramp = demand + rise
    if action is ForecastAction.FLOOR:
        return window.peak_upper
    if action is ForecastAction.RAMP or headroom is None:
        return ramp
    # Both the band and observed demand plus its headroom cover the demand a lead time
    # ahead at the same quantile: the sharper of the two is the cheaper way to get that
    # coverage, and the ramp is never given up.
    return max(ramp, min(window.peak_upper, demand + headroom * (demand + band_floor)))
