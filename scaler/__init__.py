"""tidescaler: predictive autoscaling for tidal traffic, served as a KEDA external scaler."""

__version__ = "0.1.0"
