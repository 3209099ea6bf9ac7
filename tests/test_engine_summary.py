import json
import shlex

from segkit.engine.summary import logger_reports, run_summary


def test_summary_names_the_result_the_files_and_what_the_loggers_wrote(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"")
    (tmp_path / "events").mkdir()
    lines = [
        {"split": "train", "step": 10, "loss": 1.0},
        {"split": "val", "step": 10, "mIoU": 0.5},
        {"split": "val", "step": 20, "mIoU": 0.75},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.log"
    outside.write_text("x")
    text = run_summary(
        tmp_path,
        {"mIoU": 0.75, "step": 20},
        outputs=[
            (tmp_path / "events", "a logger's events"),
            (outside, "a log elsewhere"),
            (tmp_path / "never-written", "nothing"),
        ],
        watch=["watch-tool --dir events"],
    )
    assert "final validation mIoU 0.750 at iteration 20 (best 0.750 at iteration 20)" in text
    assert "checkpoints/best.pt" in text and "checkpoints/last.pt" not in text
    assert "segkit:   events/               a logger's events" in text
    assert f"{outside} a log elsewhere" in text and "never-written" not in text
    assert text.endswith("segkit: watch it: watch-tool --dir events")


def test_summary_lists_no_folder_that_no_logger_claims(tmp_path):
    """The core knows no logger's folder: a tb/ left there is not announced by name."""
    (tmp_path / "tb").mkdir()
    text = run_summary(tmp_path, None)
    assert "mIoU" not in text and f"run directory: {tmp_path}" in text
    assert "tb" not in text.replace(str(tmp_path), "") and "watch it" not in text


def test_loggers_report_their_outputs_and_a_malformed_report_is_pointed_out(tmp_path, capsys):
    class Writes:
        outputs = [(str(tmp_path / "a"), "folder a")]
        watch = f"viewer {shlex.quote(str(tmp_path / 'a'))}"

    class Garbled:
        outputs = 42

    class Silent:
        pass

    outputs, watch = logger_reports(
        {"logger w": Writes(), "logger g": Garbled(), "logger s": Silent()}
    )
    assert outputs == [(tmp_path / "a", "folder a")] and watch == [Writes.watch]
    err = capsys.readouterr().err
    assert "logger g: 'outputs' must be a list of (path, description) pairs, got 42" in err


def test_summary_of_a_run_that_stopped_early_starts_with_why(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"split": "val", "step": 6, "mIoU": 0.4}))
    why = "early stop: mIoU has not improved for 2 validations since 0.5 at iteration 2"
    lines = run_summary(tmp_path, {"mIoU": 0.5, "step": 2}, ended=why).splitlines()
    assert lines[0] == f"segkit: {why}"
    assert lines[1].startswith("segkit: final validation mIoU 0.400 at iteration 6")
