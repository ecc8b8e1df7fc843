"""data=image_folder: layouts and class numbers, preprocessing from the config, workers, a run with worker processes."""

import csv
import shutil

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.data import suggested_max_num_workers
from PIL import Image

import evaluate
from {{ cookiecutter.package_name }}.data import ImageFolderDataModule
from {{ cookiecutter.package_name }}.harness import contract
from {{ cookiecutter.package_name }}.harness.synthetic import write_image_folder

from conftest import summary

CLASSES = ["class_0", "class_1", "class_2"]


def labels_of(dataset) -> list[int]:
    return [int(label) for _, label in dataset]


def test_one_tree_is_split_by_its_own_seed(tmp_path):
    write_image_folder(tmp_path, n_per_class=10)

    def splits(**settings):
        datamodule = ImageFolderDataModule(str(tmp_path), val_fraction=0.2, test_fraction=0.1, **settings)
        datamodule.setup("fit")
        return datamodule, {name: set(dataset.indices) for name, dataset in datamodule.datasets.items()}

    datamodule, indices = splits()
    assert {name: len(held) for name, held in indices.items()} == {"train": 21, "val": 6, "test": 3}
    assert set.union(*indices.values()) == set(range(30)) and sum(map(len, indices.values())) == 30
    assert splits()[1] == indices and splits(split_seed=1)[1] != indices
    assert datamodule.model_kwargs == {"input_shape": [3, 64, 64], "num_classes": 3, "classes": CLASSES}
    # Held-out images are read without augmentation, training images with it.
    assert datamodule.datasets["val"].dataset.transform is not datamodule.datasets["train"].dataset.transform


def test_split_folders_are_used_and_numbered_as_the_training_folder(tmp_path):
    write_image_folder(tmp_path / "train", n_per_class=6)
    write_image_folder(tmp_path / "val", n_per_class=2, part=1)
    shutil.rmtree(tmp_path / "val" / "class_0")  # a class without validation images keeps its number
    datamodule = ImageFolderDataModule(str(tmp_path), test_fraction=0.5)
    datamodule.setup("fit")
    assert sorted(labels_of(datamodule.datasets["val"])) == [1, 1, 2, 2]
    # No test/ folder: half of train/ is held out for testing.
    assert len(datamodule.datasets["test"]) == 9 and len(datamodule.datasets["train"]) == 9
    assert datamodule.classes == CLASSES

    write_image_folder(tmp_path / "val", n_per_class=1, num_classes=4)
    with pytest.raises(ValueError, match=r"class folders \['class_3'\] that the training folder lacks"):
        ImageFolderDataModule(str(tmp_path)).setup("fit")


def test_a_missing_root_says_what_to_give(make_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.root=.*nowhere: no such folder. Point data.root at"):
        contract.build(make_cfg("data=image_folder", f"data.root={tmp_path / 'nowhere'}"))


def test_size_and_normalization_come_from_the_config_as_plain_lists(make_cfg, tmp_path):
    write_image_folder(tmp_path, n_per_class=4)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    overrides = [f"data.root={tmp_path}", "data.image_size=[16,16]", f"data.mean={mean}", f"data.std={std}"]
    datamodule, model = contract.build(make_cfg("data=image_folder", "data.num_workers=0", *overrides))
    assert type(datamodule.hparams["mean"]) is list and type(datamodule.hparams["image_size"]) is list
    assert model.hparams["input_shape"] == [3, 16, 16] and model.hparams["classes"] == CLASSES
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.val_dataloader()))
    first = datamodule.datasets["val"].indices[0]
    path, label = datamodule.datasets["val"].dataset.samples[first]
    pixels = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float64)).permute(2, 0, 1) / 255
    expected = (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(images[0].double(), expected, rtol=1e-5, atol=1e-5)
    assert labels[0] == label

    grey, _ = contract.build(make_cfg("data=image_folder", *overrides[:2], "data.mean=[0.5]", "data.std=[0.5]"))
    grey.setup("fit")
    assert grey.model_kwargs["input_shape"] == [1, 16, 16]
    assert next(iter(grey.train_dataloader()))[0].shape[1:] == (1, 16, 16)


def test_workers_follow_the_machine_unless_set(tmp_path):
    write_image_folder(tmp_path, n_per_class=4)
    for workers, expected in ((None, suggested_max_num_workers(1)), (0, 0), (2, 2)):
        datamodule = ImageFolderDataModule(str(tmp_path), num_workers=workers)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        assert (loader.num_workers, loader.persistent_workers) == (expected, expected > 0)
        assert loader.pin_memory is False  # no GPU in this process


def test_training_with_worker_processes_then_predicting_a_folder(make_cfg, train, tmp_path):
    root = tmp_path / "images"
    write_image_folder(root / "train", n_per_class=20)
    write_image_folder(root / "test", n_per_class=5, part=1)
    settings = [f"data.root={root}", "data.num_workers=2", "data.image_size=[16,16]", "data.augment=true"]
    train(make_cfg("data=image_folder", *settings, "trainer.max_epochs=3", "callbacks.early_stopping=null"))
    run_dir = tmp_path / "run"
    record = summary(run_dir)
    assert record["status"] == "completed" and "bookkeeping_errors" not in record
    assert record["global_step"] == 3 * 1  # 54 training images, batches of 64

    written = evaluate.main([str(run_dir), f"predict={root / 'test'}"])
    with written.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["input"] for row in rows) == sorted(f"class_{k}/{n}.png" for k in range(3) for n in range(5))
    assert all(row["class"] == CLASSES[int(row["prediction"])] for row in rows)
    # The test split is that folder: predicting it from files gives the run's test accuracy.
    accuracy = np.mean([row["input"].split("/")[0] == row["class"] for row in rows])
    assert accuracy == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
