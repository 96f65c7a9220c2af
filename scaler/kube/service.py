"""Wires the Kubernetes parts into `tidescaler serve`: Events and the start-up meter.

Both are optional. `--events auto` turns Events on in a pod (in-cluster
configuration) and off elsewhere; `on` uses the kubeconfig outside a cluster.
The start-up meter runs whenever an API client can be configured and is only
asked about ScaledObjects with `podStartupSeconds: auto`. Without a usable
configuration each part logs one line and stays off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry

from scaler.kube.api import KubeApi, KubeError, in_cluster, load_api_client
from scaler.kube.events import EventRecorder, NoEvents, ScalerEvents
from scaler.kube.startup import StartupMeter

log = logging.getLogger("tidescaler.kube")

EventsMode = Literal["auto", "on", "off"]


@dataclass
class KubeParts:
    events: ScalerEvents = field(default_factory=NoEvents)
    startup: StartupMeter | None = None
    api: KubeApi | None = None

    def close(self) -> None:
        if isinstance(self.events, EventRecorder):
            self.events.close()
        if self.startup is not None:
            self.startup.close()
        if self.api is not None:
            self.api.close()


def start_kube(
    events: EventsMode,
    *,
    kubeconfig: str | None = None,
    polling_interval_seconds: float = 30.0,
    registry: CollectorRegistry | None = None,
    startup_refresh_seconds: float = 300.0,
) -> KubeParts:
    """Configure the API client and start what it allows. Without an API configuration
    both are off, said in the log, unless the operator asked for them (`--events on`, or
    a kubeconfig named): then the KubeError is raised, for a one-line refusal at start."""
    try:
        api = KubeApi(load_api_client(kubeconfig))
    except KubeError as err:
        if events == "on" or kubeconfig is not None:
            raise
        log.info(
            "no Kubernetes API configuration: Events and podStartupSeconds: auto are off",
            extra={"error": str(err)},
        )
        return KubeParts()
    parts = KubeParts(api=api)
    if events == "on" or (events == "auto" and in_cluster()):
        recorder = EventRecorder(api, polling_interval_seconds=polling_interval_seconds)
        parts.events = recorder
        if registry is not None:
            registry.register(recorder.collector())
        log.info("writing Events on ScaledObjects")
    else:
        log.info("Events are off", extra={"events": events, "in_cluster": in_cluster()})
    parts.startup = StartupMeter(api, refresh_seconds=startup_refresh_seconds).start()
    if registry is not None:
        registry.register(parts.startup.collector())
    return parts
