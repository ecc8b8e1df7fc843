"""evaluate.py on a finished run: its test metrics again, predictions for raw inputs, clear errors."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import evaluate
import train as train_script
from {{ cookiecutter.package_name }}.data import DigitsDataModule

from conftest import compose_cfg, summary


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, data_dir) -> Path:
    """The default model trained on digits for a few epochs."""
    logs = tmp_path_factory.mktemp("logs")
    cfg = compose_cfg("trainer.max_epochs=3", "logger=csv", data_dir=data_dir, log_dir=logs, output_dir=logs / "run")
    train_script.train(cfg)
    return logs / "run"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_raw_digits_predicted_give_the_trained_accuracy(digits_run, tmp_path):
    # The test split as scikit-learn gives it (floats from 0 to 16), without any normalization.
    images, labels = DigitsDataModule().load()["test"]
    raw = tmp_path / "digits.npy"
    np.save(raw, images.squeeze(1).numpy().astype(np.float64))

    written = evaluate.main([str(digits_run), f"predict={raw}"])

    best = Path(summary(digits_run)["best_checkpoint"])
    assert written == digits_run / "predictions" / f"digits-{best.stem}.csv"
    rows = read_rows(written)
    assert [int(row["index"]) for row in rows] == list(range(len(labels)))
    predicted = np.array([int(row["prediction"]) for row in rows])
    assert all(0 < float(row["probability"]) <= 1 for row in rows)
    accuracy = (predicted == labels.numpy()).mean()
    assert accuracy == pytest.approx(summary(digits_run)["metrics"]["test/acc"], abs=1e-6)


def test_evaluation_repeats_the_runs_test_and_validation_metrics(digits_run):
    record = summary(digits_run)
    written = evaluate.main([str(digits_run)])
    result = json.loads(written.read_text())
    assert written.parent == digits_run / "evaluation" and result["split"] == "test"
    assert result["checkpoint"] == record["best_checkpoint"]
    for metric in ("test/loss", "test/acc"):
        assert result["metrics"][metric] == pytest.approx(record["metrics"][metric], rel=1e-6), metric

    # The last checkpoint holds the weights of the last validation.
    result = json.loads(evaluate.main([str(digits_run), "ckpt=last", "split=val"]).read_text())
    for metric in ("val/loss", "val/acc"):
        assert result["metrics"][metric] == pytest.approx(record["metrics"][metric], rel=1e-6), metric


def test_overrides_change_the_runs_config(digits_run):
    result = json.loads(evaluate.main([str(digits_run), "data.eval_batch_size=7", "ckpt=last"]).read_text())
    assert result["overrides"] == ["data.eval_batch_size=7"]
    assert result["metrics"]["test/acc"] > 0.5


def test_a_moved_run_folder_still_finds_its_checkpoints(digits_run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(digits_run, moved)
    result = json.loads(evaluate.main([str(moved)]).read_text())
    assert Path(result["checkpoint"]).parent == moved / "checkpoints"


def test_bad_input_says_what_to_give_instead(digits_run, tmp_path, capsys):
    def refused(*argv: str) -> str:
        with pytest.raises(SystemExit) as stopped:
            evaluate.main([*argv])
        assert stopped.value.code == 2
        return capsys.readouterr().err

    assert "Did you mean data.batch_size?" in refused(str(digits_run), "data.batchsize=3")
    assert "no config_resolved.yaml" in refused(str(tmp_path))
    assert "ckpt=/no/such.ckpt: no such file" in refused(str(digits_run), "ckpt=/no/such.ckpt")
    assert "predict=/no/such/folder: no such file or folder" in refused(str(digits_run), "predict=/no/such/folder")
    assert "split=train: use split=test or split=val" in refused(str(digits_run), "split=train")

    # A DataModule without predict_path cannot predict: the message says what to add.
    other = tmp_path / "other"
    shutil.copytree(digits_run, other)
    config = yaml.safe_load((other / "config_resolved.yaml").read_text())
    del config["data"]["predict_path"]
    (other / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    message = refused(str(other), f"predict={tmp_path}")
    assert "takes no predict_path" in message and "predict_dataloader" in message
