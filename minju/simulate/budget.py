"""Part of `minju simulate`: budget (to be written)."""

from __future__ import annotations

from minju.simulate.core import Sim


def plan(sim: Sim) -> None:
    """Register this part's steps on the simulation's calendar."""
