"""From a run directory (and optionally ``segkit eval``'s JSON) to the report's HTML.

The inputs are read and checked first (run files, eval JSON, config, class list, matplotlib),
then the checkpoint makes one pass over the validation set, then the page is drawn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from segkit.engine.inference import InferenceSettings
from segkit.engine.progress import ProgressBar
from segkit.errors import ConfigError
from segkit.report import figures, pictures
from segkit.report.confusion import row_normalised, top_confusions
from segkit.report.page import ReportContent, WorstImage, render
from segkit.report.predictions import (
    ScoredImage,
    ValidationPass,
    class_ious,
    predict_validation,
)
from segkit.report.rundata import RunFiles, check_evaluation, read_evaluation, read_run


def make_report(
    run_dir: str | Path,
    evaluation: str | Path | None = None,
    *,
    worst: int = 6,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> str:
    """The report's HTML; ``worst`` images are shown, ``checkpoint`` replaces the run's
    best.pt (else last.pt), ``device`` the config's train.device."""
    from segkit.data import build_dataset
    from segkit.engine.loaded_model import inference_config, load_trained
    from segkit.weights import read_checkpoint

    run = read_run(run_dir, checkpoint)
    scored = read_evaluation(evaluation) if evaluation is not None else None
    figures.check_matplotlib()
    record = read_checkpoint(run.checkpoint)
    config = inference_config(run.config_path, run.checkpoint, record)
    settings = _settings(config, scored)
    dataset = build_dataset(config, "val")
    classes = [str(name) for name in dataset.classes]
    num_classes = config["model"]["num_classes"]
    if len(classes) != num_classes:
        raise ConfigError(
            f"{run.config_path}: model.num_classes is {num_classes} but data.val has "
            f"{len(classes)} classes"
        )
    if scored is not None:
        check_evaluation(scored, evaluation, classes)
    trained = load_trained(config, run.checkpoint, device, checkpoint=record)
    _, palette, _ = trained.labels(num_classes)
    bar = ProgressBar(len(dataset), "report") if progress else None
    validation = predict_validation(trained, settings, dataset, config, worst, bar)
    if bar is not None:
        bar.close()
    notes = _notes(run, scored, evaluation, settings)
    metrics, source = _metrics(validation, classes, scored, evaluation)
    confusion, confusion_source = _confusion(validation, scored)
    labelled = confusion.sum(axis=1)
    return render(
        ReportContent(
            run=str(run.path),
            checkpoint=str(run.checkpoint),
            step=trained.step,
            made=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            classes=classes,
            metrics=metrics,
            metrics_source=source,
            settings=f"{settings.describe()}; device {trained.device}, precision "
            f"{trained.precision.name}",
            images=len(dataset),
            curves=figures.learning_curves(run.records),
            heatmap=figures.confusion_heatmap(row_normalised(confusion), classes),
            pixels=list(labelled / labelled.sum()) if labelled.sum() > 0 else None,
            confusions=top_confusions(confusion, classes),
            confusion_source=confusion_source,
            worst=[_worst_image(image, classes, palette) for image in validation.worst],
            config=run.config_text,
            environments=_environments(run.environment, trained),
            notes=notes,
        )
    )


def _settings(config: dict[str, Any], scored: dict[str, Any] | None) -> InferenceSettings:
    """The config's eval settings, or those the eval JSON was made with (``--mode``, ``--tta``),
    so that the worst images are the ones that evaluation scored."""
    if scored is None:
        return InferenceSettings.from_config(config["eval"])
    scales = scored.get("scales")
    tta = bool(scored.get("flip")) or (isinstance(scales, list) and len(scales) > 1)
    mode = scored.get("mode") if scored.get("mode") in ("whole", "slide") else None
    return InferenceSettings.from_config(config["eval"], mode, tta)


def _metrics(
    validation: ValidationPass,
    classes: list[str],
    scored: dict[str, Any] | None,
    evaluation: str | Path | None,
) -> tuple[dict[str, Any], str]:
    if scored is not None:
        return scored, f"from {evaluation}"
    import torch

    from segkit.metrics import segmentation_metrics

    counts = torch.from_numpy(validation.confusion)
    return segmentation_metrics(counts, classes), "counted by this report's pass"


def _confusion(validation: ValidationPass, scored: dict[str, Any] | None) -> tuple[np.ndarray, str]:
    if scored is not None and scored.get("confusion_matrix") is not None:
        return np.asarray(scored["confusion_matrix"], dtype=np.float64), "from the eval JSON"
    return validation.confusion, "counted by this report's pass"


def _notes(
    run: RunFiles,
    scored: dict[str, Any] | None,
    evaluation: str | Path | None,
    settings: InferenceSettings,
) -> list[str]:
    """What a reader should know before trusting the page: parts of it that may disagree."""
    notes = []
    if run.unreadable_lines:
        notes.append(
            f"metrics.jsonl: {run.unreadable_lines} line(s) that are not JSON objects were left "
            "out (a write cut short, e.g. by a crash)"
        )
    if run.environment is None:
        notes.append("env.json is missing or unreadable: the environment shown is this machine's")
    if scored is None:
        return notes
    evaluated = scored.get("checkpoint")
    if isinstance(evaluated, str) and Path(evaluated).resolve() != run.checkpoint.resolve():
        notes.append(
            f"{evaluation} evaluated {evaluated}; the worst images are predicted by "
            f"{run.checkpoint} (choose it with --checkpoint)"
        )
    expected = (scored.get("mode"), scored.get("scales"), scored.get("flip"))
    if expected != (settings.mode, list(settings.scales), settings.flip):
        notes.append(
            f"{evaluation} was made with mode {expected[0]}, scales {expected[1]}, flip "
            f"{expected[2]}; the run's config gives {settings.describe()} for the worst images"
        )
    if scored.get("confusion_matrix") is None:
        notes.append(
            f"{evaluation} holds no confusion matrix: the one shown was counted by this report's "
            "pass with the same checkpoint and settings"
        )
    return notes


def _worst_image(image: ScoredImage, classes: list[str], palette) -> WorstImage:
    focus = pictures.focus_class(image.confusion)
    ious = class_ious(image.confusion)
    lowest = int(np.nanargmin(ious))
    return WorstImage(
        name=image.name,
        iou=image.iou,
        focus=classes[focus],
        focus_iou=float(ious[focus]),
        lowest=classes[lowest],
        lowest_iou=float(ious[lowest]),
        pictures=pictures.panels(image.image, image.label, image.prediction, focus, palette),
    )


def _environments(recorded: dict[str, Any] | None, trained) -> list[tuple[str, dict[str, Any]]]:
    """The run's env.json beside this machine's versions and device: a report made later,
    elsewhere, reruns the checkpoint with what is here."""
    from segkit.engine.precision import device_name
    from segkit.engine.rundir import environment

    current = environment(
        device=str(trained.device),
        device_name=device_name(trained.device),
        precision=trained.precision.name,
    )
    current.pop("command", None)
    current.pop("started", None)
    columns = [("report (this machine)", current)]
    if recorded is not None:
        columns.insert(0, ("run (env.json)", recorded))
    return columns
