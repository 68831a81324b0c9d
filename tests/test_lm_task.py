"""Language modelling: the GPT baseline, its KV cache, sampling, and the LMTask loss."""

import importlib
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from lit_metriplector.cli import build_from_config
from lit_metriplector.datamodules import ByteTextDataModule
from lit_metriplector.errors import ConfigError
from lit_metriplector.metrics import BitsPerByte
from lit_metriplector.modules.base import count_parameters
from lit_metriplector.modules.lm import LMTask
from lit_metriplector.networks import GPT, LinearRecurrentLM, ModernGPT
from lit_metriplector.networks.generate import generate
from lit_metriplector.networks.lm import MetriplectorLM


def tiny_gpt(block_size: int = 8) -> GPT:
    torch.manual_seed(0)
    return GPT(block_size=block_size, layers=2, heads=2, width=16).double().eval()


def tiny_metriplector() -> MetriplectorLM:
    torch.manual_seed(0)
    return MetriplectorLM(width=16, layers=2, modes=8).double().eval()


def tiny_modern_gpt() -> ModernGPT:
    torch.manual_seed(0)
    return ModernGPT(block_size=8, layers=2, heads=2, width=16).double().eval()


def tiny_lru() -> LinearRecurrentLM:
    torch.manual_seed(0)
    return LinearRecurrentLM(width=16, layers=2, states=8).double().eval()


def tiny_metriplector_options() -> MetriplectorLM:
    torch.manual_seed(0)
    return (
        MetriplectorLM(
            width=16,
            layers=2,
            modes=8,
            input_friction=True,
            conv=3,
            coupling=True,
        )
        .double()
        .eval()
    )


NETWORKS = {
    "gpt": tiny_gpt,
    "metriplector": tiny_metriplector,
    "metriplector_options": tiny_metriplector_options,
    "modern_gpt": tiny_modern_gpt,
    "lru": tiny_lru,
}


def random_bytes(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(256, shape, generator=torch.Generator().manual_seed(seed))


def greedy_by_forward(network: nn.Module, prompt: torch.Tensor, new: int) -> torch.Tensor:
    """Greedy continuation that reruns ``forward`` on the context for every byte (cropped to
    ``block_size`` for the GPT, whose positions are absolute)."""
    block = network.block_size if isinstance(network, GPT) else None
    seq = prompt
    for _ in range(new):
        logits = network(seq if block is None else seq[:, -block:])[0][:, -1]
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    return seq


def test_gpt_shapes_and_no_reports():
    logits, reports = tiny_gpt()(random_bytes(3, 8))
    assert logits.shape == (3, 8, 256) and reports == []


def test_gpt_is_causal():
    gpt = tiny_gpt()
    x = random_bytes(2, 8)
    y = x.clone()
    y[:, 5] = (y[:, 5] + 1) % 256
    a, b = gpt(x)[0], gpt(y)[0]
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_gpt_rejects_sequences_longer_than_block_size():
    with pytest.raises(ValueError, match="block_size 8"):
        tiny_gpt()(random_bytes(1, 9))


def test_gpt_weights_are_tied():
    gpt = tiny_gpt()
    assert gpt.head.weight is gpt.token_embedding.weight


def test_step_with_kv_cache_equals_forward_also_past_block_size():
    gpt, block = tiny_gpt(), 8
    seq = random_bytes(2, 2 * block + 3)
    state = gpt.init_state(2, dtype=torch.float64)
    full = gpt(seq[:, :block])[0]
    for t in range(seq.shape[1]):
        logits, state = gpt.step(seq[:, t], state)
        # Within block_size the cache extends one forward; past it the context is cropped.
        expected = full[:, t] if t < block else gpt(seq[:, t - block + 1 : t + 1])[0][:, -1]
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
        assert state.tokens.shape[1] == min(t + 1, block)


@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS.keys())
def test_generate_is_seeded_and_greedy_is_argmax(make):
    network = make()
    prompt = random_bytes(2, 3)

    def sampled(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return generate(network, prompt, 12, temperature=1.0, top_k=50, generator=g)

    out = sampled(0)
    assert out.shape == (2, 15) and out.dtype == torch.long
    assert torch.equal(out[:, :3], prompt)
    assert torch.equal(out, sampled(0))
    assert not torch.equal(out, sampled(1))
    greedy = greedy_by_forward(network, prompt, 12)
    assert torch.equal(generate(network, prompt, 12, temperature=0.0), greedy)
    assert torch.equal(generate(network, prompt, 12, top_k=1), greedy)


def test_lm_loss_is_bits_per_byte_times_ln2():
    task = LMTask(network=tiny_gpt())
    inputs, target = task.split_batch(random_bytes(2, 9))
    assert inputs.shape == target.shape == (2, 8)
    logits = task(inputs)[0]
    bpb = BitsPerByte().double()(logits, target)
    torch.testing.assert_close(task.compute_loss(logits, target), bpb * math.log(2))


def test_uniform_model_costs_eight_bits_per_byte():
    gpt = tiny_gpt()
    nn.init.zeros_(gpt.token_embedding.weight)  # the tied head: every logit is 0
    batch = random_bytes(2, 9)
    logits = gpt(batch[:, :-1])[0]
    torch.testing.assert_close(BitsPerByte()(logits, batch[:, 1:]), torch.tensor(8.0))


def test_prompts_are_utf8_bytes_one_dataloader_each():
    dm = ByteTextDataModule(prompts=["é\n", "a"])
    loaders = dm.predict_dataloader()
    assert [next(iter(loader)).tolist() for loader in loaders] == [[[195, 169, 10]], [[97]]]
    assert dm.predict_names == ["prompt0", "prompt1"]
    assert next(iter(ByteTextDataModule().predict_dataloader()[0])).tolist() == [[10]]
    with pytest.raises(ValueError, match="non-empty"):
        ByteTextDataModule(prompts=[""])


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METRIPLECTOR_PARAMETERS = 1_825_920  # the plain Metriplector LM's (the baselines match it)


@pytest.mark.parametrize(
    ("config", "cls", "tolerance"),
    [
        ("lm", MetriplectorLM, 0.005),
        ("lm_gpt", GPT, 0.01),
        ("lm_modern_gpt", ModernGPT, 0.02),
        ("lm_lru", LinearRecurrentLM, 0.02),
    ],
)
def test_baseline_configs_match_the_metriplector_config_in_parameters(config, cls, tolerance):
    with torch.device("meta"):  # only counted
        network = build_from_config(CONFIGS / f"{config}.yaml")[0].network
    assert type(network) is cls
    difference = count_parameters(network) - METRIPLECTOR_PARAMETERS
    assert abs(difference) <= tolerance * METRIPLECTOR_PARAMETERS


class SevenBitText(ByteTextDataModule):
    """ASCII text: an alphabet of 128 symbols."""

    vocab_size = 128


def test_the_vocabulary_comes_from_the_data_through_the_cli():
    task, _ = build_from_config(CONFIGS / "lm.yaml", "--data=tests.test_lm_task.SevenBitText")
    assert task.network.vocab_size == task.network.embedding.num_embeddings == 128
    # a value the config states gives way to the data's
    stated = "--model.init_args.network.init_args.vocab_size=100"
    task, _ = build_from_config(CONFIGS / "lm_gpt.yaml", stated)
    assert task.network.vocab_size == task.network.token_embedding.num_embeddings == 256


def test_modern_gpt_has_no_biases_and_ties_or_unties_its_head():
    tied, untied = (
        ModernGPT(width=16, heads=2, layers=1),
        ModernGPT(width=16, heads=2, layers=1, tie_weights=False),
    )
    assert tied.head.weight is tied.token_embedding.weight
    assert untied.head.weight is not untied.token_embedding.weight
    assert all(m.bias is None for m in tied.modules() if isinstance(m, nn.Linear))
    assert all(isinstance(m, nn.RMSNorm) for m in tied.modules() if "Norm" in type(m).__name__)


def test_network_vocabulary_must_match_the_data(tmp_path):
    """The data decides the alphabet: a network built for another one stops with a clear error."""
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(bytes(range(256)) * 8)
    data = ByteTextDataModule(path=str(corpus), seq_len=8, batch_size=2)
    task = LMTask(network=MetriplectorLM(vocab_size=100, width=8, layers=1, modes=4))
    trainer = L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match="vocab_size 256 but the network was built for 100"):
        trainer.fit(task, datamodule=data)


@pytest.mark.parametrize(
    "name",
    [
        "metriplector+conv",
        "metriplector+input",
        "metriplector+conv+input+coupling",
        "metriplector+conv+input+wide",
        "metriplector+input+wider",
        "metriplector+input+widest",
        "metriplector+input+wider+gate",
        "metriplector+deep",
        "metriplector+modes",
    ],
)
def test_benchmarked_changes_keep_the_parameter_count(name, monkeypatch):
    # benchmarks/lm.py compares changes to the Metriplector LM at (nearly) equal parameters.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    lm_benchmark = importlib.import_module("lm")
    difference = count_parameters(lm_benchmark.build(name)) - METRIPLECTOR_PARAMETERS
    assert abs(difference) < 0.02 * METRIPLECTOR_PARAMETERS


def test_the_selective_lm_config_feeds_the_physics_monitors(tmp_path, monkeypatch):
    """The selective blocks report the core's ledger: the monitors log it (read back from the
    TensorBoard event files), energy conserved to float64 rounding, no entropy lost."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_metriplector.callbacks import EnergyMonitor, EntropyMonitor

    from .test_cli import TINY

    monkeypatch.chdir(tmp_path)
    task, data = build_from_config(CONFIGS / "lm.yaml", *TINY["lm"])
    assert task.network.blocks[0].modulated
    logger = TensorBoardLogger(tmp_path, name="selective")
    trainer = L.Trainer(
        max_steps=2,
        logger=logger,
        limit_val_batches=0,
        callbacks=[EnergyMonitor(every_n_steps=1), EntropyMonitor(every_n_steps=1)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(task, data)
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0})
    events.Reload()
    drift = [e.value for e in events.Scalars("physics/layer0/energy_drift")]
    produced = [e.value for e in events.Scalars("physics/layer0/entropy_produced")]
    assert len(drift) == 2 and max(drift) < 1e-9
    assert min(produced) > 0
    assert {e.value for e in events.Scalars("physics/entropy_violations")} == {0.0}
