"""`edge-bridge demo`: the whole system on one machine (see `edge_bridge.demo.runner`)."""

from edge_bridge.demo.runner import run_demo

__all__ = ["run_demo"]
