import gzip
import logging
import lzma
import os
import pickle
import zipfile
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_metriplector.datamodules.text import ByteTextDataModule
from tests.recording import fit_recording

# Lightning's advice to use more workers; its warning on resuming mid-epoch from a dataloader
# without state_dict (the datamodule holds that state); the resumed run's checkpoints joining the
# first run's; Lightning 2.6 using a pytree API that torch 2.13 deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
    pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated"),
]


def random_bytes(n: int, seed: int = 0) -> bytes:
    # Random bytes make every window unique, so a window's position in the corpus is known.
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def write(path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def setup_dm(tmp_path, path, **kwargs) -> ByteTextDataModule:
    kwargs.setdefault("seq_len", 8)
    dm = ByteTextDataModule(path, cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def split_bytes(dm: ByteTextDataModule) -> dict[str, bytes]:
    return {split: windows.data.tobytes() for split, windows in dm.splits.items()}


def offsets(dm: ByteTextDataModule) -> list[int]:
    return list(dm.train_dataloader().sampler)


def test_single_file_split_by_position_and_memmapped_in_place(tmp_path):
    data = random_bytes(1000)
    file = write(tmp_path / "corpus.bin", data)
    dm = setup_dm(tmp_path, file)
    assert split_bytes(dm) == {"train": data[:900], "val": data[900:950], "test": data[950:]}
    assert (dm.train_bytes, dm.val_bytes, dm.test_bytes, dm.vocab_size) == (900, 50, 50, 256)
    for windows in dm.splits.values():
        assert isinstance(windows.data, np.memmap)
        assert windows.data.filename == os.path.abspath(file)
    assert not (tmp_path / "cache").exists()  # nothing copied


def test_folder_is_read_recursively_sorted_without_hidden_files(tmp_path):
    parts = [random_bytes(300, seed) for seed in range(3)]
    write(tmp_path / "d" / "b.txt", parts[1])
    write(tmp_path / "d" / "a" / "z.txt", parts[0])
    write(tmp_path / "d" / "c.txt", parts[2])
    write(tmp_path / "d" / ".hidden", b"x" * 100)
    write(tmp_path / "d" / ".git" / "HEAD", b"y" * 100)
    dm = setup_dm(tmp_path, str(tmp_path / "d"), val_fraction=0.1, test_fraction=0.0)
    assert split_bytes(dm) == {"train": b"".join(parts)[:810], "val": b"".join(parts)[810:]}
    assert dm.test_bytes == 0
    assert dm.test_dataloader() == []
    assert dm.splits["train"].data.filename.startswith(str(tmp_path / "cache"))


def test_glob_and_list(tmp_path):
    for seed, name in enumerate(["a.txt", "b.txt", "c.md"]):
        write(tmp_path / name, random_bytes(200, seed))
    dm = setup_dm(tmp_path, str(tmp_path / "*.txt"), val_fraction=0.0, test_fraction=0.0)
    assert split_bytes(dm) == {"train": random_bytes(200, 0) + random_bytes(200, 1)}
    write(tmp_path / "sub" / "d.txt", random_bytes(200, 3))
    dm = setup_dm(
        tmp_path,
        [str(tmp_path / "c.md"), str(tmp_path / "sub"), str(tmp_path / "[ab].txt")],
        test_fraction=0.0,
        val_fraction=0.0,
    )
    expected = (
        random_bytes(200, 2) + random_bytes(200, 3) + random_bytes(200, 0) + random_bytes(200, 1)
    )
    assert split_bytes(dm) == {"train": expected}


@pytest.mark.parametrize("suffix, compress", [(".xz", lzma.compress), (".gz", gzip.compress)])
def test_compressed_files_are_decompressed_into_the_cache(tmp_path, suffix, compress):
    data = random_bytes(1000)
    file = write(tmp_path / f"corpus{suffix}", compress(data))
    dm = setup_dm(tmp_path, file)
    assert b"".join(split_bytes(dm).values()) == data
    (cached,) = os.listdir(tmp_path / "cache")
    assert dm.splits["val"].data.filename == str(tmp_path / "cache" / cached)
    # A second datamodule reuses the cache file.
    assert (
        setup_dm(tmp_path, file).splits["train"].data.filename == dm.splits["train"].data.filename
    )
    assert os.listdir(tmp_path / "cache") == [cached]


@pytest.mark.parametrize("member", ["enwik8", "only_member.txt"])
def test_zip_is_split_like_enwik8(tmp_path, caplog, member):
    data = random_bytes(2000)
    path = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
        if member == "enwik8":
            zf.writestr("readme.txt", b"not the corpus")
    with caplog.at_level(logging.INFO, logger="lit_metriplector"):
        dm = setup_dm(tmp_path, str(path), val_fraction=0.3)  # enwik8's 90/5/5 split wins
    assert split_bytes(dm) == {"train": data[:1800], "val": data[1800:1900], "test": data[1900:]}
    assert "90/5/5 split scaled" in caplog.text


def test_folder_with_named_splits(tmp_path):
    folder = tmp_path / "english"
    train, val, test, other = (random_bytes(500, seed) for seed in range(4))
    write(folder / "train.txt.xz", lzma.compress(train))
    write(folder / "valid.txt", val)
    write(folder / "test.txt.gz", gzip.compress(test))
    write(folder / "README.md", b"about the corpus")
    dm = setup_dm(tmp_path, str(folder))
    assert split_bytes(dm) == {"train": train, "val": val, "test": test}
    # Explicit paths override the folder's own files.
    dm = setup_dm(tmp_path, str(folder), test_path=write(tmp_path / "t.bin", other))
    assert split_bytes(dm) == {"train": train, "val": val, "test": other}


def test_val_path_overrides_and_test_is_still_cut_from_the_corpus(tmp_path):
    data, val = random_bytes(1000), random_bytes(100, 1)
    dm = setup_dm(
        tmp_path, write(tmp_path / "c.bin", data), val_path=write(tmp_path / "v.bin", val)
    )
    assert split_bytes(dm) == {"train": data[:950], "test": data[950:], "val": val}


def test_default_corpus_is_the_standard_library(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lit_metriplector"):
        dm = setup_dm(tmp_path, None, seq_len=16)
    assert dm.train_bytes + dm.val_bytes + dm.test_bytes == 8 * 2**20
    assert b"def " in dm.splits["train"].data[:100_000].tobytes()
    assert "standard library" in caplog.text
    assert f"train {dm.train_bytes:,}" in caplog.text


def test_batches_are_windows_of_the_corpus(tmp_path):
    data = random_bytes(2000)
    file = write(tmp_path / "c.bin", data)
    dm = setup_dm(tmp_path, file, seq_len=8, batch_size=5, val_windows=7)
    # samples_per_epoch defaults to train bytes // seq_len: 225 windows, 45 batches.
    assert len(dm.train_dataloader()) == 45
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (5, 9)
    assert batch.dtype == torch.int64
    for window in batch:
        assert bytes(window.tolist()) in data[:1800]
    val = torch.cat(list(dm.val_dataloader()))
    assert val.shape == (7, 9)  # 11 windows would fit in the 100 bytes; capped at 7
    starts = [data.index(bytes(w.tolist())) - 1800 for w in val]
    assert starts == [0, 15, 30, 45, 60, 75, 91]  # evenly spaced over the whole split
    assert torch.equal(torch.cat(list(dm.val_dataloader())), val)  # fixed
    # Without a cap: every non-overlapping window.
    test = torch.cat(list(dm.test_dataloader()))
    starts = [data.index(bytes(w.tolist())) - 1900 for w in test]
    assert len(starts) == 100 // 9
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 9


def test_training_offsets_are_deterministic(tmp_path):
    file = write(tmp_path / "c.bin", random_bytes(3000))
    first, second = (setup_dm(tmp_path, file) for _ in range(2))
    assert offsets(first) == offsets(second)
    assert len(set(offsets(first))) > len(offsets(first)) // 2  # random, not a constant
    sampler = first.train_dataloader().sampler
    sampler.set_epoch(1)
    assert list(sampler) != offsets(first)
    assert offsets(setup_dm(tmp_path, file, seed=1)) != offsets(first)
    # A loader with worker processes yields the same batches.
    with_workers = setup_dm(tmp_path, file, num_workers=2)
    for a, b in zip(first.train_dataloader(), with_workers.train_dataloader(), strict=True):
        assert torch.equal(a, b)


def test_ranks_take_disjoint_strided_shares(tmp_path):
    file = write(tmp_path / "c.bin", random_bytes(3000))
    single = offsets(setup_dm(tmp_path, file, samples_per_epoch=41))
    shares = []
    for rank in range(2):
        dm = setup_dm(tmp_path, file, samples_per_epoch=41)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        shares.append(offsets(dm))
    assert len(shares[0]) == len(shares[1]) == 20  # equal, so DDP ranks stay in step
    assert shares[0] == single[0:40:2]
    assert shares[1] == single[1:40:2]


def test_windows_pickle_without_their_bytes(tmp_path):
    dm = setup_dm(tmp_path, write(tmp_path / "c.bin", random_bytes(100_000)))
    windows = dm.splits["train"]
    copy = pickle.loads(pickle.dumps(windows))
    assert len(pickle.dumps(windows)) < 1000
    assert isinstance(copy.data, np.memmap)
    assert torch.equal(copy[123], windows[123])


def test_state_dict_without_trainer_resumes_the_sampler(tmp_path):
    file = write(tmp_path / "c.bin", random_bytes(3000))
    dm = setup_dm(tmp_path, file, samples_per_epoch=30)
    assert dm.state_dict() == {"epoch": 0, "samples": 0}
    resumed = setup_dm(tmp_path, file, samples_per_epoch=30)
    resumed.load_state_dict({"epoch": 0, "samples": 12})
    assert resumed.state_dict() == {"epoch": 0, "samples": 12}
    assert offsets(resumed) == offsets(dm)[12:]
    assert len(resumed.train_dataloader()) == len(dm.train_dataloader())  # epoch length kept


class Recorder(L.LightningModule):
    """A bigram model (one nn.Linear over one-hot bytes) that records the batches it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(256, 256)
        self.batches: list[torch.Tensor] = []

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.linear(F.one_hot(batch[:, :-1], 256).float())
        return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.batches.append(batch.clone())
        return self.loss(batch)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(
    tmp_path, steps: int, save_at: int | None = None, via="train_batch", ckpt_path=None, workers=0
):
    """The batches of a `steps`-step run, checkpointed at save_at (see `fit_recording`)."""
    # 18 samples in batches of 4: 5 batches per epoch, the last one short.
    dm = ByteTextDataModule(
        write(tmp_path / "c.bin", random_bytes(3000)),
        seq_len=8,
        batch_size=4,
        samples_per_epoch=18,
        num_workers=workers,
        cache_dir=str(tmp_path / "cache"),
    )
    return fit_recording(Recorder(), dm, tmp_path, steps, save_at, via, ckpt_path)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return fit(tmp_path_factory.mktemp("uninterrupted"), 14)


@pytest.mark.parametrize(
    "steps, via, workers",
    [
        (3, "train_batch", 0),
        (5, "train_batch", 0),
        (7, "train_batch", 0),
        (3, "validation", 0),
        (7, "train_batch", 2),
    ],
    ids=[
        "mid-epoch-0-across-the-boundary",
        "end-of-epoch-0",
        "mid-epoch-1-across",
        "after-val",
        "mid-epoch-1-workers",
    ],
)
def test_resumed_run_sees_the_same_batches(tmp_path, uninterrupted, steps, via, workers):
    first = fit(tmp_path, steps, steps, via, workers=workers)
    ckpt = tmp_path / "ckpt" / f"step={steps}.ckpt"
    resumed = fit(tmp_path, 2 * steps, steps, via, ckpt_path=str(ckpt), workers=workers)
    state = torch.load(ckpt, weights_only=False)["ByteTextDataModule"]
    assert (state["epoch"], state["samples"]) == (steps // 5, steps % 5 * 4)  # 5 batches of 4
    assert len(first) == len(resumed) == steps
    for seen, expected in zip(first + resumed, uninterrupted, strict=False):
        assert torch.equal(seen, expected)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"seq_len": 0}, ValueError, "seq_len must be >= 1, got 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"num_workers": -1}, ValueError, "num_workers must be >= 0"),
        ({"samples_per_epoch": 0}, ValueError, "samples_per_epoch must be >= 1"),
        ({"val_windows": 0}, ValueError, "val_windows must be >= 1"),
        ({"val_fraction": 1.0}, ValueError, r"val_fraction must be in \[0, 1\), got 1.0"),
        ({"test_fraction": -0.1}, ValueError, r"test_fraction must be in \[0, 1\)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, ValueError, "must be < 1"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        ByteTextDataModule(str(tmp_path), **kwargs)


@pytest.fixture
def broken_corpora(tmp_path, monkeypatch):
    """A folder of broken corpora, made the working directory so that paths are short."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "empty.txt", b"")
    (tmp_path / "empty_folder").mkdir()
    write(tmp_path / "hidden_only" / ".x", b"abc")
    write(tmp_path / "short.txt", b"012345678")
    write(tmp_path / "empty.xz", lzma.compress(b""))
    write(tmp_path / "big.txt", random_bytes(1000))
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.writestr("a", b"a" * 100)
        zf.writestr("b", b"b" * 100)
    with zipfile.ZipFile(tmp_path / "none.zip", "w"):
        pass
    return tmp_path


@pytest.mark.parametrize(
    "path, val_path, error, words",
    [
        ("missing.txt", None, FileNotFoundError, ["missing.txt", "does not exist"]),
        ("*.nothing", None, FileNotFoundError, ["*.nothing", "no files match"]),
        ("big.txt", "missing.txt", FileNotFoundError, ["missing.txt", "does not exist"]),
        ("empty.txt", None, ValueError, ["empty.txt", "is empty"]),
        ("empty_folder", None, ValueError, ["empty_folder", "contains no"]),
        ("hidden_only", None, ValueError, ["hidden_only", "contains no"]),
        ("short.txt", None, ValueError, ["train split", "short.txt", "9 bytes", "+ 2 = 10"]),
        ("big.txt", "short.txt", ValueError, ["val split", "short.txt", "9 bytes", "+ 2 = 10"]),
        ("empty.xz", None, ValueError, ["train split", "empty.xz", "0 bytes"]),
        ("two.zip", None, ValueError, ["two.zip", "no member named enwik8", "2 members"]),
        ("none.zip", None, ValueError, ["none.zip", "0 members"]),
        ([], None, ValueError, ["path is an empty list"]),
    ],
)
def test_corpus_errors_name_the_path_and_the_problem(broken_corpora, path, val_path, error, words):
    dm = ByteTextDataModule(path, val_path=val_path, seq_len=8, cache_dir=str(broken_corpora))
    with pytest.raises(error) as info:
        dm.prepare_data()
    for word in words:
        assert word in str(info.value)


def test_val_with_too_little_data_for_a_fraction(tmp_path):
    # 60 bytes: 5% is 3 bytes of validation, too short for one window.
    dm = ByteTextDataModule(write(tmp_path / "c.bin", random_bytes(60)), seq_len=8)
    with pytest.raises(ValueError, match=r"val split \(.*c.bin\) has 3 bytes"):
        dm.setup("fit")
