"""``segkit report``: one self-contained HTML page about a training run (learning curves,
per-class scores, confusions, the worst validation images, config and environment)."""

from segkit.report.make import make_report

__all__ = ["make_report"]
