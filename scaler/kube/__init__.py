"""The Kubernetes side of tidescaler: Events on ScaledObjects, measured pod start-up,
and a ScaledObject and its workload read for a what-if. Every part is optional and
degrades to the behaviour without API access."""
