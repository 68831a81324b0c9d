import functools
import gzip
import http.server
import io
import logging
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_metriplector.datasets.images import (
    CIFAR100,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    RestrictedUnpickler,
    file_md5,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_pickle,
    read_idx,
    train_val_split,
)
from lit_metriplector.errors import DataError


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's str (BINSTRING), as the official CIFAR files hold them;
    Python 3's own protocol 2 would write a call to _codecs.encode instead."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    """A pickle laid out like the official files: protocol 2, bytes keys, numpy 1's names."""
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def fake_cifar100(data_dir: Path, n_train: int = 5, n_test: int = 3) -> dict:
    """A tiny cifar-100-python.tar.gz in data_dir; returns its arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    members = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[split] = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine": rng.integers(0, 100, n).tolist(),
            "coarse": rng.integers(0, 20, n).tolist(),
        }
        members[f"cifar-100-python/{split}"] = py2_pickle(
            {
                b"filenames": [f"img_{i}.png".encode() for i in range(n)],
                b"batch_label": f"{split}ing batch 1 of 1".encode(),
                b"fine_labels": arrays[split]["fine"],
                b"coarse_labels": arrays[split]["coarse"],
                b"data": arrays[split]["data"],
            }
        )
    members["cifar-100-python/meta"] = py2_pickle(
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
    )
    write_tar(data_dir / "cifar-100-python.tar.gz", members)
    return arrays


def fake_cifar10_members(per_batch: int = 2) -> tuple[dict[str, bytes], np.ndarray, list]:
    """The members of a tiny cifar-10-python.tar.gz and the training data in batch order."""
    rng = np.random.default_rng(1)
    members, data, labels = {}, [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch_labels = rng.integers(0, 10, per_batch).tolist()
        if name != "test_batch":
            data.append(batch)
            labels += batch_labels
        members[f"cifar-10-batches-py/{name}"] = py2_pickle(
            {b"data": batch, b"labels": batch_labels, b"batch_label": name.encode()}
        )
    members["cifar-10-batches-py/batches.meta"] = py2_pickle(
        {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}
    )
    return members, np.concatenate(data), labels


def test_cifar100_from_archive_round_trips_pixels_and_labels(tmp_path):
    arrays = fake_cifar100(tmp_path)
    md5 = file_md5(tmp_path / "cifar-100-python.tar.gz")
    train = load_cifar100(tmp_path, "train", md5=md5)
    data = arrays["train"]["data"]
    assert train.images.shape == (5, 3, 32, 32) and train.images.dtype == torch.uint8
    # Row layout: R plane, G plane, B plane, each 32 x 32 row-major.
    assert train.images[2, 1, 3, 4] == data[2, 1 * 1024 + 3 * 32 + 4]
    assert np.array_equal(train.images.reshape(5, -1).numpy(), data)
    assert train.targets.tolist() == arrays["train"]["fine"]
    assert train.classes[:2] == ("fine0", "fine1") and len(train.classes) == 100
    assert (train.mean, train.std) == (CIFAR100.mean, CIFAR100.std)
    item = train[4]
    assert item["input"].shape == (3, 32, 32) and item["input"].dtype == torch.uint8
    assert item["target"].dtype == torch.long and item["target"] == arrays["train"]["fine"][4]

    test = load_cifar100(tmp_path, "test", labels="coarse", md5=None)
    assert np.array_equal(test.images.reshape(3, -1).numpy(), arrays["test"]["data"])
    assert test.targets.tolist() == arrays["test"]["coarse"]
    assert len(test.classes) == 20


def test_cifar10_from_archive_and_from_extracted_folder(tmp_path):
    members, data, labels = fake_cifar10_members()
    archive = write_tar(tmp_path / "cifar-10-python.tar.gz", members)
    train = load_cifar10(tmp_path, md5=file_md5(archive))
    assert np.array_equal(train.images.reshape(10, -1).numpy(), data)  # batches 1..5 in order
    assert train.targets.tolist() == labels
    assert train.classes == tuple(f"class{i}" for i in range(10))

    # The extracted folder alone serves, without the archive.
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    archive.unlink()
    assert torch.equal(load_cifar10(tmp_path).images, train.images)
    assert len(load_cifar10(tmp_path, "test")) == 2


def test_missing_archive_names_file_md5_size_and_remedy(tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar100(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-100-python.tar.gz") in message
    assert "169,001,437 bytes, md5 eb9058c3a382ffc7106e4002c42a8d85" in message
    assert CIFAR100.url in message and "download=True" in message
    assert "--data.init_args.download=true" in message  # the CLI's spelling too


def test_md5_mismatch_names_file_both_md5s_and_remedy(tmp_path):
    fake_cifar100(tmp_path)
    archive = tmp_path / "cifar-100-python.tar.gz"
    with pytest.raises(DataError) as info:
        load_cifar100(tmp_path)  # the official md5
    message = str(info.value)
    assert str(archive) in message and file_md5(archive) in message
    assert "169,001,437 bytes, md5 eb9058c3a382ffc7106e4002c42a8d85" in message
    assert "download=True" in message


def test_archive_without_a_member_or_not_a_tar_is_named(tmp_path):
    members, _, _ = fake_cifar10_members()
    del members["cifar-10-batches-py/data_batch_3"]
    write_tar(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_3"):
        load_cifar10(tmp_path, md5=None)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a tar at all")
    with pytest.raises(DataError, match="not a readable tar.gz archive"):
        load_cifar10(tmp_path, md5=None)


def test_wrong_layout_is_a_data_error(tmp_path):
    members, _, _ = fake_cifar10_members()
    members["cifar-10-batches-py/test_batch"] = py2_pickle(
        {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    )
    write_tar(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DataError, match="test_batch: 'data' has shape"):
        load_cifar10(tmp_path, "test", md5=None)


def malicious_pickle(marker: Path) -> bytes:
    # Protocol 0: os.system("touch marker") on load.
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def test_restricted_unpickler_refuses_code_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    assert pickle.loads(malicious_pickle(marker)) == 0 and marker.exists()  # it is live
    marker.unlink()
    with pytest.raises(DataError, match=r"evil\.pkl asks to load os\.system"):
        load_pickle(io.BytesIO(malicious_pickle(marker)), "evil.pkl")
    assert not marker.exists()

    # The same inside an archive, named by member.
    members, _, _ = fake_cifar10_members()
    members["cifar-10-batches-py/test_batch"] = malicious_pickle(marker)
    write_tar(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DataError, match="cifar-10-python.tar.gz:cifar-10-batches-py/test_batch"):
        load_cifar10(tmp_path, "test", md5=None)
    assert not marker.exists()


@pytest.mark.parametrize("module", ["builtins", "numpy", "numpy.lib.npyio", "subprocess"])
def test_restricted_unpickler_refuses_other_globals(module):
    unpickler = RestrictedUnpickler(io.BytesIO(b""), "f")
    with pytest.raises(DataError, match="refusing"):
        unpickler.find_class(module, "eval" if module == "builtins" else "load")


def test_restricted_unpickler_reads_numpy_1_and_2_array_pickles():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    # Python 3's pickles from protocol 3 on hold bytes natively (protocol 2 would call
    # _codecs.encode) and name numpy 2's module.
    for payload in (py2_pickle(array), pickle.dumps(array, protocol=4)):
        loaded = load_pickle(io.BytesIO(payload), "a")
        assert loaded.dtype == np.uint8 and np.array_equal(loaded, array)
    assert b"numpy.core.multiarray" in py2_pickle(array)


def test_corrupt_pickle_is_a_data_error():
    with pytest.raises(DataError, match="not a readable pickle"):
        load_pickle(io.BytesIO(py2_pickle({b"data": 1})[:-5]), "cut.pkl")


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP from a thread; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_verifies_md5_and_reports_progress(tmp_path, http_folder, caplog):
    served, base = http_folder
    arrays = fake_cifar100(served)
    url = f"{base}/cifar-100-python.tar.gz"
    md5 = file_md5(served / "cifar-100-python.tar.gz")
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="lit_metriplector"):
        train = load_cifar100(data_dir, download=True, url=url, md5=md5)
    assert train.targets.tolist() == arrays["train"]["fine"]
    assert file_md5(data_dir / "cifar-100-python.tar.gz") == md5
    assert f"downloading {url}" in caplog.text and "100%" in caplog.text
    assert sorted(os.listdir(data_dir)) == ["cifar-100-python.tar.gz"]  # no temporary left

    # A damaged local copy is fetched again when download=True.
    (data_dir / "cifar-100-python.tar.gz").write_bytes(b"damaged")
    assert len(load_cifar100(data_dir, download=True, url=url, md5=md5)) == 5
    assert file_md5(data_dir / "cifar-100-python.tar.gz") == md5


def test_download_with_wrong_md5_saves_nothing(tmp_path, http_folder):
    served, base = http_folder
    fake_cifar100(served)
    url = f"{base}/cifar-100-python.tar.gz"
    with pytest.raises(DataError, match=f"downloaded from {url} has md5 .*not the expected 0+"):
        load_cifar100(tmp_path / "data", download=True, url=url, md5="0" * 32)
    assert os.listdir(tmp_path / "data") == []
    with pytest.raises(DataError, match="404"):
        load_cifar100(tmp_path / "data", download=True, url=f"{base}/nothing.tar.gz")


def idx_bytes(array: np.ndarray) -> bytes:
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + (array.astype(np.uint8).tobytes())
    )


def write_idx(folder: Path, name: str, array: np.ndarray, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    payload = idx_bytes(array)
    path = folder / (name + ".gz" if gz else name)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def fake_mnist(folder: Path, gz: bool, n_train: int = 6, n_test: int = 4) -> dict:
    rng = np.random.default_rng(2)
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder, f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder, f"{prefix}-labels-idx1-ubyte", labels, gz)
        arrays[split] = images, labels
    return arrays


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_round_trip(tmp_path, gz):
    arrays = fake_mnist(tmp_path, gz)
    for split in ("train", "test"):
        images, labels = arrays[split]
        fashion = load_fashion_mnist(tmp_path, split)
        assert fashion.images.shape == (len(images), 1, 28, 28)
        assert np.array_equal(fashion.images[:, 0].numpy(), images)
        assert fashion.targets.dtype == torch.long and fashion.targets.tolist() == labels.tolist()
        assert fashion.classes[0] == "T-shirt/top" and len(fashion.classes) == 10
    digits = load_mnist(tmp_path, "test")
    assert digits.classes[3] == "3" and digits[1]["input"].shape == (1, 28, 28)


def test_idx_header_and_size_errors(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    good = idx_bytes(images)
    cases = {
        "magic": (good[:2] + b"\x09" + good[3:], "not the IDX magic number 00000803"),
        "ndim": (idx_bytes(images[0]), "starts with 00000802"),
        "empty": (b"", "starts with nothing"),
        "header": (good[:9], "ends inside its IDX header"),
        "short": (good[:-1], f"holds only {3 * 784 - 1:,} data bytes.*declares 2,352"),
        "long": (good + b"\0", "holds more than data bytes"),
    }
    for name, (payload, message) in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(DataError, match=message):
            read_idx(tmp_path / name, 3)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(good)[:-12])  # cut inside the stream
    with pytest.raises(DataError, match="bad.gz"):
        read_idx(tmp_path / "bad.gz", 3)


def test_mnist_files_that_do_not_belong_together_or_are_missing(tmp_path):
    fake_mnist(tmp_path, gz=True)
    write_idx(tmp_path, "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8), gz=True)
    with pytest.raises(DataError, match="holds 4 images but .*t10k-labels-idx1-ubyte.gz 5 labels"):
        load_mnist(tmp_path, "test")
    with pytest.raises(DataError) as info:
        load_fashion_mnist(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "train-images-idx3-ubyte") + "(.gz) is missing" in message
    assert "dataset-fashion-mnist" in message


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist absent")
def test_debian_fashion_mnist_loads():
    train, test = load_fashion_mnist(), load_fashion_mnist(split="test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.equal(test.targets.bincount(), torch.full((10,), 1000))
    assert train.classes == FASHION_MNIST_CLASSES and train[0]["target"] == 9  # an ankle boot
    pixels = train.images.double() / 255
    assert pixels.mean().item() == pytest.approx(FASHION_MNIST_MEAN[0], abs=1e-4)
    assert pixels.std().item() == pytest.approx(FASHION_MNIST_STD[0], abs=1e-4)


def test_split_is_seeded_disjoint_and_complete():
    train, val = train_val_split(100, 0.1, seed=3)
    assert len(val) == 10 and len(train) == 90
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    again = train_val_split(100, 10, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, train_val_split(100, 10, seed=4)[1])
    with pytest.raises(ValueError):
        train_val_split(10, 11)
    with pytest.raises(ValueError):
        train_val_split(10, 1.5)


def test_select_keeps_classes_and_constants(tmp_path):
    fake_cifar100(tmp_path)
    train = load_cifar100(tmp_path, md5=None)
    part = train.select(np.array([4, 0]))
    assert torch.equal(part.images, train.images[[4, 0]])
    assert torch.equal(part.targets, train.targets[[4, 0]])
    assert (part.classes, part.mean, part.std) == (train.classes, train.mean, train.std)
