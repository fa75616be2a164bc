"""baseguard: Kubernetes admission control for base image policy."""

__version__ = "0.1.0"
