"""``tenure demo``: sample segments, templates and five journeys on the running stack,
and a simulated population of customers living through them (see :mod:`tenure.demo.run`).
The HTTP calls are all in :mod:`tenure.demo.client`."""

from tenure.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
