"""`tidescaler fleet`: which services of a fleet should scale on a forecast.

One unit of work per service (its series in, a small summary out), run on a
Dask cluster: a local one with every core by default, a remote scheduler with
`--scheduler`. The per-service evaluation is the same code as `backtest` and
`simulate`; this package only finds the services, ships the work, caches what
finished and writes the fleet report.
"""
