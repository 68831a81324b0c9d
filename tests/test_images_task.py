"""Image classification: the fast grid layer against the core, stability at the CIFAR shape,
parameter counts, augmentation, the DataModules on fabricated files, every image config
through the CLI, the prediction writer."""

import csv
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from lit_metriplector.cli import build_from_config, main
from lit_metriplector.core import CGOptions, Grid2D, MetriplectorLayer, Parametrization, Rollout
from lit_metriplector.core.grid import _EulerRollout, _GridSolve
from lit_metriplector.datamodules import (
    Augmentation,
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
)
from lit_metriplector.datamodules.images import BatchAugmentation, crop_flip, mix
from lit_metriplector.errors import ConfigError
from lit_metriplector.modules import ClassificationTask
from lit_metriplector.networks import DepthwiseTwin, ImageConfig, ImageMetriplector, WideResNet
from lit_metriplector.networks.layers import fast_asinh
from tests.test_image_data import fake_cifar10_members, fake_cifar100, fake_mnist, write_tar

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = "--model.init_args.network.init_args.config"  # the ImageConfig
TWIN_CLASS = "--model.init_args.network=lit_metriplector.networks.DepthwiseTwin"
BOUNDED = Parametrization(edge_rank=2, max_rate=1.0, min_damping=0.5)


def count(module):
    return sum(p.numel() for p in module.parameters())


def network_of(config: str, *overrides: str, **architecture) -> torch.nn.Module:
    """The network that the CLI builds from a shipped config (sizes linked from its data), with
    command-line ``overrides`` and fields ``architecture`` of its ``ImageConfig`` changed."""
    changed = [f"{ARCHITECTURE}.{k}={v}" for k, v in architecture.items()]
    return build_from_config(ROOT / "configs" / config, *overrides, *changed)[0].network


# --- the fast grid layer is the core's layer ------------------------------------------------


@pytest.mark.parametrize(
    "integrator, branch",
    [("euler", "full"), ("euler", "dissipative"), ("strang", "full"), ("strang", "dissipative")],
)
def test_grid_layer_matches_the_core_path(integrator, branch):
    torch.manual_seed(0)
    solver = CGOptions(tol=1e-13, dtype="float64")  # strang: both CGs to rounding
    dynamics = Rollout(branch, 4, integrator, 0.3, rotation=branch == "full", solver=solver)
    layer = MetriplectorLayer(
        12, dim=2, fields=3, dynamics=dynamics, parametrization=BOUNDED
    ).double()
    assert layer.fused_grid
    x = torch.randn(2, 12, 5, 6, dtype=torch.float64, requires_grad=True)
    params = [x, *layer.parameters()]
    for diagnostics in (False, True):
        update, report, charges = layer.mix(x, diagnostics)
        reference, ref_report = layer.forward_generic(x, Grid2D(5, 6), diagnostics=diagnostics)
        fused, _ = layer(x, Grid2D(5, 6), diagnostics=diagnostics)  # forward takes the fused path
        assert torch.equal(fused, x + update)
        assert torch.allclose(x + update, reference, atol=1e-10)
        ours = torch.autograd.grad(update.square().sum(), params, allow_unused=True)
        theirs = torch.autograd.grad((reference - x).square().sum(), params, allow_unused=True)
        for a, b in zip(ours, theirs, strict=True):
            assert (a is None and b is None) or torch.allclose(a, b, atol=1e-10)
        assert charges.shape == (2, 3, 6)
        if diagnostics:
            assert torch.allclose(report.ledger.energy, ref_report.ledger.energy, atol=1e-10)
            assert torch.allclose(report.ledger.entropy, ref_report.ledger.entropy, atol=1e-10)


def test_a_users_grid_layer_takes_the_fused_path_unless_its_options_need_the_generic_one():
    fused = MetriplectorLayer(
        8, dim=2, fields=2, dynamics=Rollout(steps=2), parametrization=BOUNDED
    )
    assert fused.fused_grid  # strang with the default (Jacobi) solve: the image network's path
    plain = Rollout(steps=2, solver=CGOptions(preconditioner="none"))
    generic = MetriplectorLayer(8, dim=2, fields=2, dynamics=plain, parametrization=BOUNDED)
    assert not generic.fused_grid  # the fused CG is Jacobi's: "none" is honoured elsewhere
    with pytest.raises(ValueError, match="fused grid path"):
        generic.mix(torch.randn(1, 8, 4, 4))
    calls = []
    generic.forward_generic = lambda *a, **k: calls.append(1) or (a[0], None)
    generic(torch.randn(1, 8, 4, 4), Grid2D(4, 4))
    assert calls == [1]


@pytest.mark.parametrize("momenta", [True, False])
def test_euler_adjoint_passes_gradcheck(momenta):
    torch.manual_seed(0)
    b, c, h, w = 2, 2, 3, 4

    def tensor(*shape, positive=False):
        t = torch.rand(*shape, dtype=torch.float64) if positive else torch.randn(*shape).double()
        return t.requires_grad_()

    sites = (b, c, h, w)
    args = [
        tensor(*sites),
        tensor(b, c, h - 1, w, positive=True),
        tensor(b, c, h, w - 1, positive=True),
        tensor(*sites, positive=True),
        tensor(*sites),
        tensor(*sites, positive=True) if momenta else None,
        tensor(*sites, positive=True),
        tensor(c, c),
        tensor(c, c) if momenta else None,
        torch.tensor(0.1, dtype=torch.float64, requires_grad=True),
        3,
    ]

    def rollout(*a):
        a = list(a)
        a[7] = a[7] @ a[7].T  # the coupling is symmetric
        return _EulerRollout.apply(*a)

    assert torch.autograd.gradcheck(rollout, args)


def test_grid_solve_passes_gradcheck():
    torch.manual_seed(0)
    b, c, h, w = 2, 2, 3, 4

    def tensor(*shape, positive=False):
        t = torch.rand(*shape, dtype=torch.float64) if positive else torch.randn(*shape).double()
        return (t + 0.5 if positive else t).requires_grad_()

    rhs = tensor(b, c, h, w)
    shift = tensor(b, c, h, w, positive=True)
    kv, kh = tensor(b, c, h - 1, w, positive=True), tensor(b, c, h, w - 1, positive=True)
    mass2, root = tensor(b, c, h, w, positive=True), tensor(c, c)

    def solve(rhs, shift, kv, kh, mass2, root):
        x0 = torch.zeros_like(rhs)
        return _GridSolve.apply(rhs, x0, shift, kv, kh, mass2, root @ root.T, 1e-13, 200)

    assert torch.autograd.gradcheck(solve, [rhs, shift, kv, kh, mass2, root])


def test_fast_asinh():
    x = torch.cat([torch.randn(100) * 100, torch.tensor([0.0, 1e-30, -1e-8, 1e20])]).double()
    assert torch.allclose(fast_asinh(x), torch.asinh(x), rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(fast_asinh, [x[:10].clone().requires_grad_()])


# --- stability at the CIFAR shape -----------------------------------------------------------


def cifar_shaped(**init_args) -> ImageMetriplector:
    """The CIFAR-10 config's network (CIFAR-100's but for the classes) with narrow stages: the
    same depths, physics and bounds."""
    narrow = {"widths": [8, 8, 8], "fields": [2, 2, 2], "mlp_ratio": 1.0}
    return network_of("cifar10.yaml", **{**narrow, **init_args})


@pytest.mark.parametrize("steps", [8, 32])  # the config's, and 4x as many
def test_training_at_the_cifar_shape_is_stable(steps):
    torch.manual_seed(0)
    net = cifar_shaped(steps=steps)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.05)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(net(x)[0], y)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        logits, reports = net(x * 10, diagnostics=True)  # louder input than any it saw
    assert torch.isfinite(logits).all()
    assert len(reports) == sum(len(blocks) for blocks in net.stages)
    for report in reports:
        ledger = report.ledger
        assert ledger.hamiltonian.shape[0] == steps + 1
        h = ledger.hamiltonian
        assert torch.isfinite(h).all()
        assert (h.diff(dim=0) <= 1e-4 * h.abs().amax(0)).all()  # Euler never raises H
        assert (ledger.entropy_production() >= 0).all()


def test_strang_at_the_cifar_shape_is_stable():
    torch.manual_seed(0)
    net = cifar_shaped(integrator="strang", depths=[1, 1, 1]).eval()
    with torch.no_grad():
        logits, reports = net(torch.randn(2, 3, 32, 32) * 10, diagnostics=True)
    assert torch.isfinite(logits).all()
    for report in reports:
        assert torch.isfinite(report.ledger.hamiltonian).all()
        assert (report.ledger.entropy_production() >= -1e-5).all()


# --- parameter counts -----------------------------------------------------------------------


def stage_shape(network: torch.nn.Module) -> tuple[list[int], list[int]]:
    """The widths and depths of an image network's stages, read off its modules."""
    return [b[0].norm1.num_features for b in network.stages], [len(b) for b in network.stages]


@pytest.mark.parametrize("config", ["fashion_mnist.yaml", "cifar100.yaml"])
def test_switching_to_the_twin_keeps_the_configs_architecture(config):
    stated = yaml.safe_load((ROOT / "configs" / config).read_text())["model"]["init_args"]
    stated = stated["network"]["init_args"]["config"]
    with torch.device("meta"):  # only inspected
        ours, twin = network_of(config), network_of(config, TWIN_CLASS)
        narrow = network_of(config, TWIN_CLASS, widths=[8, 16, 24])  # the command line too
    assert type(ours) is ImageMetriplector and type(twin) is DepthwiseTwin
    assert twin.config == ours.config == ImageConfig(**stated)
    assert stage_shape(twin) == stage_shape(ours) == (stated["widths"], stated["depths"])
    assert stage_shape(narrow) == ([8, 16, 24], stated["depths"])
    stem = twin.stem[0]
    assert stem.stride[0] == ours.stem[0].stride[0] == stated.get("stem_stride", 1)
    # the sizes linked from the data reach the twin as they reach the Metriplector
    assert (stem.in_channels, twin.classifier.out_features) == (
        ours.stem[0].in_channels,
        ours.classifier.out_features,
    )


def test_the_config_checks_its_stages():
    with pytest.raises(ValueError, match="one entry per stage"):
        ImageConfig(widths=[8, 8], depths=[1], fields=[2, 2])
    with pytest.raises(ValueError, match="one entry per stage"):
        ImageConfig(widths=[], depths=[], fields=[])
    config = ImageConfig(widths=[8, 8], depths=[1, 1], fields=[2, 2])
    assert config.widths == (8, 8) and hash(config) == hash(ImageConfig((8, 8), (1, 1), (2, 2)))


@pytest.mark.slow  # five configs through the CLI's parser
def test_parameter_counts():
    with torch.device("meta"):  # only counted
        ours, twin = network_of("cifar100.yaml"), network_of("cifar100.yaml", TWIN_CLASS)
        small, small_twin = (network_of("fashion_mnist.yaml", *c) for c in ([], [TWIN_CLASS]))
        wrn = network_of("cifar100_wrn.yaml")
    assert isinstance(twin, DepthwiseTwin) and isinstance(small_twin, DepthwiseTwin)
    assert 2.0e6 < count(ours) <= 2.26e6
    assert abs(count(twin) / count(ours) - 1) < 0.02
    assert abs(count(small_twin) / count(small) - 1) < 0.02
    assert 2.2e6 < count(wrn) < 2.3e6  # WRN-40-2 on CIFAR-100


def test_every_image_network_satisfies_the_task_protocol():
    for net in (
        cifar_shaped(),
        WideResNet(3, 10, 10, 1),
        DepthwiseTwin(3, 10, ImageConfig(widths=[8, 8], depths=[1, 1], fields=[2, 2])),
    ):
        logits, reports = net(torch.randn(2, 3, 16, 16))
        assert logits.shape == (2, 10) and isinstance(reports, list)


# --- augmentation ---------------------------------------------------------------------------


def test_crop_flip_moves_pixels_only():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    same = crop_flip(images, 0, False)
    assert torch.equal(same, images)
    flipped = crop_flip(images, 0, True)
    for a, b in zip(flipped, images, strict=True):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
    cropped = crop_flip(images, 2, True)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    # every crop is a window of the zero-padded image
    padded = torch.nn.functional.pad(images, (2,) * 4)
    for a, p in zip(cropped, padded, strict=True):
        windows = p.unfold(1, 8, 1).unfold(2, 8, 1).permute(1, 2, 0, 3, 4).flatten(0, 1)
        assert any(torch.equal(a, w) or torch.equal(a, w.flip(-1)) for w in windows)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixed_targets_are_distributions(kind):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
    mixed, target = mix(x, y, 5, 1.0, kind)
    assert mixed.shape == x.shape and target.shape == (8, 5)
    assert torch.allclose(target.sum(1), torch.ones(8))
    if kind == "cutmix":  # the weight of the own label is the area kept
        kept = (mixed == x).float().mean((1, 2, 3))
        own = target.gather(1, y[:, None])[:, 0]
        differs = ~torch.isclose(own, torch.ones(8))
        assert differs.any() and torch.allclose(kept[differs], own[differs], atol=1e-6)


def test_batch_augmentation_keeps_shapes_and_dtypes():
    torch.manual_seed(0)
    full = Augmentation(randaugment_ops=2, erasing=0.5, mixup=0.8, cutmix=1.0)
    augment = BatchAugmentation((0.5, 0.4, 0.3), (0.2, 0.2, 0.2), 10, full)
    batch = {
        "input": torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8),
        "target": torch.randint(0, 10, (6,)),
    }
    out = augment.train()(batch)
    assert out["input"].shape == (6, 3, 12, 12) and out["input"].dtype == torch.float32
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (6, 3, 12, 12)
    # mix_probability 1: every training batch is mixed, its targets distributions over classes
    assert out["target"].shape == (6, 10)
    assert torch.allclose(out["target"].sum(1), torch.ones(6))
    evaluated = augment.eval()(batch)
    assert torch.equal(evaluated["target"], batch["target"])
    assert torch.equal(evaluated["image"], batch["input"])
    expected = (batch["input"].float() / 255 - 0.5 * torch.ones(1)) / 0.2
    assert torch.allclose(evaluated["input"][:, 0], expected[:, 0], atol=1e-5)


# --- DataModules on fabricated files --------------------------------------------------------


def fabricate(folder: Path) -> dict:
    """Tiny CIFAR-100, CIFAR-10 and Fashion-MNIST files in ``folder``."""
    for name in ("cifar100", "cifar10"):
        (folder / name).mkdir(parents=True)
    fake_cifar100(folder / "cifar100", n_train=10, n_test=4)
    members, _, _ = fake_cifar10_members(per_batch=2)
    write_tar(folder / "cifar10" / "cifar-10-python.tar.gz", members)
    fake_mnist(folder / "fashion", gz=True, n_train=10, n_test=4)
    return {
        "cifar100": folder / "cifar100",
        "cifar10": folder / "cifar10",
        "fashion": folder / "fashion",
    }


def test_datamodules_on_fabricated_files(tmp_path):
    folders = fabricate(tmp_path)
    cases = [
        (CIFAR100DataModule, folders["cifar100"], (3, 32, 32), 100, {"md5": None}),
        (CIFAR10DataModule, folders["cifar10"], (3, 32, 32), 10, {"md5": None}),
        (FashionMNISTDataModule, folders["fashion"], (1, 28, 28), 10, {}),
    ]
    for cls, folder, shape, classes, extra in cases:
        dm = cls(data_dir=str(folder), batch_size=4, val_size=2, seed=3, **extra)
        dm.setup("fit")
        assert len(dm.train_set) + len(dm.val_set) == 10 and len(dm.val_set) == 2
        assert len(dm.classes) == classes == dm.num_classes
        batch = next(iter(dm.train_dataloader()))
        assert batch["input"].dtype == torch.uint8 and batch["input"].shape == (4, *shape)
        assert batch["target"].dtype == torch.long
        again = cls(data_dir=str(folder), batch_size=4, val_size=2, seed=3, **extra)
        again.setup("fit")
        assert torch.equal(again.val_set.images, dm.val_set.images)  # seeded split
        dm.setup("predict")
        assert len(dm.predict_set) == len(dm.test_set) <= 4  # all of a tiny test set
        assert len(next(iter(dm.test_dataloader()))["target"]) == len(dm.test_set)
    whole = CIFAR100DataModule(data_dir=str(folders["cifar100"]), val_size=0, md5=None)
    whole.setup("fit")
    assert len(whole.train_set) == 10 and len(whole.val_set) == 4  # validates on the test set


# --- the CLI --------------------------------------------------------------------------------

TINY_NETWORK = [
    f"{ARCHITECTURE}.widths=[8, 8, 8]",
    f"{ARCHITECTURE}.depths=[1, 1, 1]",
    f"{ARCHITECTURE}.fields=[2, 2, 2]",
    f"{ARCHITECTURE}.steps=2",
]
TINY_WRN = [
    "--model.init_args.network.init_args.depth=10",
    "--model.init_args.network.init_args.widen_factor=1",
]
IMAGE_CONFIGS = {
    "cifar100": ("cifar100", TINY_NETWORK),
    "cifar100_wrn": ("cifar100", TINY_WRN),
    "cifar10": ("cifar10", TINY_NETWORK),
    "cifar10_wrn": ("cifar10", TINY_WRN),
    "fashion_mnist": ("fashion", TINY_NETWORK),
}


def tiny_image_args(config: str, folders: dict) -> list[str]:
    data, network = IMAGE_CONFIGS[config]
    args = [
        "--config",
        str(ROOT / "configs" / f"{config}.yaml"),
        *network,
        f"--data.init_args.data_dir={folders[data]}",
        "--data.init_args.batch_size=2",
        "--data.init_args.val_size=2",
        "--data.init_args.num_workers=0",
        "--data.init_args.predict_size=4",
        "--trainer.enable_progress_bar=false",
    ]
    if data != "fashion":
        args.append("--data.init_args.md5=null")
    return args


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(IMAGE_CONFIGS))
def test_image_config_fast_dev_run(config, tmp_path, monkeypatch):
    folders = fabricate(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", *tiny_image_args(config, folders), "--trainer.fast_dev_run=1"])
    assert cli.trainer.global_step == 1 and cli.trainer.state.finished
    assert "test/top1" in cli.trainer.callback_metrics  # one test set, named "test": no prefix


@pytest.mark.slow
def test_fit_logs_pictures_and_predict_writes_a_grid_and_csv(tmp_path, monkeypatch):
    folders = fabricate(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    args = tiny_image_args("fashion_mnist", folders)
    cli = main(["fit", *args, "--trainer.max_steps=2", "--trainer.limit_val_batches=1"])
    task = cli.model
    assert isinstance(task, ClassificationTask)
    assert set(task.per_class_accuracy["test"]) == set(cli.datamodule.classes)
    batch = cli.datamodule.on_after_batch_transfer(next(iter(cli.datamodule.test_dataloader())), 0)
    pictures = task.render_prediction(batch, task(batch["input"])[0])
    assert pictures.dtype == torch.uint8 and pictures.shape[:2] == (2, 3)
    assert list(Path("runs/fashion_mnist").rglob("events.out.tfevents.*"))
    network = cli.config["fit"]["model"]["init_args"]["network"]["init_args"]
    assert (network["num_classes"], network["in_channels"]) == (10, 1)  # the recipe's values
    # the sizes linked from the data are in the checkpoint: it loads without the config
    loaded = ClassificationTask.load_from_checkpoint("runs/fashion_mnist/checkpoints/last.ckpt")
    stem = next(m for m in loaded.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert loaded.num_classes == 10 and stem.in_channels == 1
    main(
        [
            "predict",
            *args,
            "--ckpt_path=runs/fashion_mnist/checkpoints/last.ckpt",
            "--trainer.logger=false",
        ]
    )
    folder = Path("predictions/fashion_mnist/test")
    assert len(list(folder.glob("batch_*.png"))) == 2
    with open(folder / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    assert all(r["prediction_name"] in cli.datamodule.classes for r in rows)
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)


@pytest.mark.parametrize(
    ("data", "classes", "channels"),
    [([], 10, 1), (["--data=CIFAR100DataModule", "--data.init_args.labels=coarse"], 20, 3)],
)
def test_classes_and_channels_come_from_the_data_through_the_cli(data, classes, channels):
    for network in ([], ["--model.init_args.network=lit_metriplector.networks.WideResNet"]):
        task, _ = build_from_config(ROOT / "configs" / "fashion_mnist.yaml", *data, *network)
        assert task.num_classes == classes
        assert task.network.classifier.out_features == classes
        stem = next(m for m in task.network.modules() if isinstance(m, torch.nn.Conv2d))
        assert stem.in_channels == channels


def test_a_task_built_in_python_for_other_classes_stops_at_setup(tmp_path):
    folders = fabricate(tmp_path)
    data = FashionMNISTDataModule(data_dir=str(folders["fashion"]), batch_size=2, val_size=2)
    task = ClassificationTask(WideResNet(1, 7, 10, 1), num_classes=7)
    trainer = L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match="the data has 10 classes .* with num_classes=10"):
        trainer.fit(task, datamodule=data)


def test_loss_takes_soft_targets_and_smoothing():
    task = ClassificationTask(WideResNet(3, 5, 10, 1), num_classes=5, label_smoothing=0.1)
    logits = torch.randn(4, 5)
    hard = torch.tensor([0, 1, 2, 3])
    soft = torch.nn.functional.one_hot(hard, 5).float()
    assert torch.allclose(task.compute_loss(logits, hard), task.compute_loss(logits, soft))
    metrics = task.build_metrics()
    metrics.update(logits, soft)
    assert set(metrics.compute()) == {"top1", "top5", "balanced"}
    assert math.isclose(float(metrics.compute()["top5"]), 1.0)
    assert np.isfinite(float(metrics.compute()["balanced"]))
