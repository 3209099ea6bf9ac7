"""Ending a run when validation stops improving (``train.early_stop``).

Each validation's ``metric`` either improves on the best value so far by more than
``min_delta`` (in the direction ``mode`` says) or counts one more stale validation; after
``patience`` stale validations in a row the run ends as if it had reached ``max_iters``: it
writes ``last.pt``, which records why it stopped, so that a resume says it finished instead of
training on. The first validation always sets the best value. A metric that could not be computed
(no labelled pixel) counts as stale. Every process sees the same metrics, so all stop together.
"""

from __future__ import annotations

from typing import Any


class EarlyStop:
    """The best value of the watched metric, where it was reached, and the validations since."""

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0, mode: str = "max"):
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> EarlyStop | None:
        if section.get("patience") is None:
            return None
        return cls(section["metric"], section["patience"], section["min_delta"], section["mode"])

    def observe(self, metrics: dict[str, Any], step: int) -> bool:
        """Record a validation; True once the run must end."""
        value = metrics.get(self.metric)
        if value is not None and (self.best is None or self._improves(value)):
            self.best, self.best_step, self.stale = float(value), step, 0
        else:
            self.stale += 1
        return self.stale >= self.patience

    def _improves(self, value: float) -> bool:
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    @property
    def stopped(self) -> bool:
        return self.stale >= self.patience

    def reason(self) -> str:
        """``early stop: mIoU has not improved for 3 validations since 0.941 at iteration 200``"""
        plural = "s" if self.stale != 1 else ""
        since = (
            f" since {self.best:.4g} at iteration {self.best_step}"
            if self.best is not None
            else " (it was never computed)"
        )
        margin = f" by more than {self.min_delta:g}" if self.min_delta else ""
        return (
            f"early stop: {self.metric} has not improved{margin} for {self.stale} "
            f"validation{plural}{since}"
        )

    def state(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "best": self.best,
            "best_step": self.best_step,
            "stale": self.stale,
            "stopped": self.reason() if self.stopped else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue the count of a resumed run, if it watched the same metric."""
        if state.get("metric") == self.metric:
            self.best, self.best_step = state.get("best"), state.get("best_step")
            self.stale = state["stale"]
