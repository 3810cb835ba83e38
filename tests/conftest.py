"""Shared fixtures: a tiny synthetic TT100K, generated once per test session and registered."""

import json
import os
import shutil

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from featsr_d2.core.synthetic import generate_synthetic_tt100k
from featsr_d2.data import register_tt100k_instances
from featsr_d2.data.sr_dataset import read_rgb

TINY_TRAIN = "_test_tiny_synth_train"
TINY_TEST = "_test_tiny_synth_test"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread, restored afterwards: tiny tensors run fastest on one, and it is immune to
    an oversubscribed CPU (two threads spinning on two busy cores made tests ten times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread_in_repo(one_thread, monkeypatch):
    """:func:`one_thread`, with the repository as working directory (configs name relative
    paths)."""
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _add_empty_test_image(root: str) -> None:
    """Append a test image with no ground truth (evaluation must count it)."""
    path = os.path.join(root, "annotations.json")
    with open(path) as f:
        annos = json.load(f)
    with open(os.path.join(root, "test", "ids.txt")) as f:
        test_ids = f.read().split()
    new_id = str(max(int(i) for i in annos["imgs"]) + 1)
    src = annos["imgs"][test_ids[0]]["path"]
    dst = f"test/{new_id}.jpg"
    shutil.copy(os.path.join(root, src), os.path.join(root, dst))
    annos["imgs"][new_id] = {"path": dst, "id": int(new_id), "objects": []}
    with open(path, "w") as f:
        json.dump(annos, f)
    with open(os.path.join(root, "test", "ids.txt"), "a") as f:
        f.write(new_id + "\n")


@pytest.fixture(scope="session")
def tiny_tt100k(tmp_path_factory):
    """(train name, test name, root): 8 train and 4 (+1 empty) test images of 128 px, registered."""
    root = str(tmp_path_factory.mktemp("tiny_tt100k"))
    generate_synthetic_tt100k(root, num_train=8, num_test=4, image_size=128, seed=0, workers=1)
    _add_empty_test_image(root)
    register_tt100k_instances(TINY_TRAIN, root, "train")
    register_tt100k_instances(TINY_TEST, root, "test")
    yield TINY_TRAIN, TINY_TEST, root
    for name in (TINY_TRAIN, TINY_TEST):
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture(scope="session")
def photo():
    """A real photograph: a 96x128 crop of scikit-image's chelsea (a cat)."""
    skimage_data = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")
    return read_rgb(os.path.join(skimage_data, "chelsea.png"))[60:156, 150:278].copy()
