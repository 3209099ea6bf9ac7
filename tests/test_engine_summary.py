import json

from segkit.engine.summary import run_summary


def test_summary_names_the_result_the_files_and_tensorboard(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"")
    (tmp_path / "tb").mkdir()
    lines = [{"split": "train", "step": 10, "loss": 1.0},
             {"split": "val", "step": 10, "mIoU": 0.5},
             {"split": "val", "step": 20, "mIoU": 0.75}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = run_summary(tmp_path, {"mIoU": 0.75, "step": 20})
    assert "final validation mIoU 0.750 at iteration 20 (best 0.750 at iteration 20)" in text
    assert "checkpoints/best.pt" in text and "checkpoints/last.pt" not in text
    assert f"tensorboard --logdir {tmp_path / 'tb'}" in text


def test_summary_without_validation_still_says_where_the_run_is(tmp_path):
    text = run_summary(tmp_path, None)
    assert "mIoU" not in text and f"run directory: {tmp_path}" in text
