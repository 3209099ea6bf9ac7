from segkit.cli import main


def test_version_prints_distribution_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"segkit {version('segkit')}"


def test_missing_config_file_is_a_user_error(capsys, tmp_path):
    assert main(["config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "config file not found" in err and "Traceback" not in err
