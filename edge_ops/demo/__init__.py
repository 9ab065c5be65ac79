"""`edge-bridge demo`: the whole system on one machine (see `edge_ops.demo.runner`)."""

from edge_ops.demo.runner import run_demo

__all__ = ["run_demo"]
