"""CUDA-graphed training (deepauc.training.graphs): where it applies, and on a GPU, the same
training as eager mode step for step. The GPU tests are skipped on a machine without CUDA."""

import logging
from types import SimpleNamespace

import pytest
import timm
import torch
import torch.nn.functional as F

from deepauc.errors import InputError
from deepauc.methods.fast_steps import FastAUCMLoss, FastPESG
from deepauc.training.fit import train_step
from deepauc.training.graphs import GraphedTraining, graphs_apply
from deepauc.training.runtime import Runtime

CPU, GPU = torch.device("cpu"), torch.device("cuda")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_graphs_apply_on_one_gpu_process_without_compile():
    assert graphs_apply("auto", GPU, distributed=False, compiled=False)
    assert not graphs_apply("auto", CPU, distributed=False, compiled=False)
    assert not graphs_apply("auto", GPU, distributed=True, compiled=False)
    assert not graphs_apply("auto", GPU, distributed=False, compiled=True)
    assert not graphs_apply("false", GPU, distributed=False, compiled=False)
    assert graphs_apply("true", GPU, distributed=False, compiled=False)


@pytest.mark.parametrize(
    "device, distributed, compiled, why",
    [(CPU, False, False, "CUDA"), (GPU, True, False, "DDP"), (GPU, False, True, "compile")],
)
def test_graphs_true_where_they_cannot_apply_is_refused(device, distributed, compiled, why):
    with pytest.raises(InputError, match=why) as caught:
        graphs_apply(True, device, distributed=distributed, compiled=compiled)
    assert caught.value.where == "config key cuda_graphs"


def test_a_cpu_runtime_records_no_graph():
    assert not Runtime.create("cpu", cuda_graphs="auto").cuda_graphs


def _twin_models(arch: str):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=1)
    twin = timm.create_model(arch, pretrained=False, num_classes=1)
    twin.load_state_dict(model.state_dict())
    return [m.to(GPU, memory_format=torch.channels_last).train() for m in (model, twin)]


def _train(model, graphed: bool, optimizer_name: str, batches):
    runtime = Runtime.create("cuda", cuda_graphs=graphed)
    torch.manual_seed(1)  # libauc's PESG draws its reference weights from torch's generator
    if optimizer_name == "pesg":
        loss = FastAUCMLoss(margin=1.0, version="v1", device=GPU)
        optimizer = FastPESG(
            model.parameters(), loss_fn=loss, lr=0.01, mode="adam", epoch_decay=2e-3,
            weight_decay=1e-5, verbose=False, device=GPU,
        )  # fmt: skip

        def loss_fn(logits, targets):
            return loss(torch.sigmoid(logits), targets).squeeze()
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = F.binary_cross_entropy_with_logits
    job = SimpleNamespace(
        train_model=GraphedTraining(model) if graphed else model,
        loss_fn=loss_fn,
        optimizer=optimizer,
    )
    losses = [float(train_step(job, x, y, runtime)) for x, y in batches]
    return job.train_model, losses


def _batches(count: int, size: int = 32, batch: int = 16):
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        x = torch.randn(batch, 3, size, size, generator=generator)
        y = (torch.rand(batch, 1, generator=generator) < 0.5).float()
        y[0], y[1] = 1.0, 0.0  # both classes in every batch, as DualSampler makes them
        batches.append((x.to(GPU).contiguous(memory_format=torch.channels_last), y.to(GPU)))
    return batches


@needs_gpu
@pytest.mark.parametrize("arch", ["resnet10t", "convnext_atto"])  # BatchNorm and LayerNorm
@pytest.mark.parametrize("optimizer_name", ["pesg", "adam"])
def test_graphed_training_makes_the_eager_updates(arch, optimizer_name):
    batches = _batches(6)
    eager_model, graphed_model = _twin_models(arch)
    _, eager_losses = _train(eager_model, False, optimizer_name, batches)
    wrapper, graphed_losses = _train(graphed_model, True, optimizer_name, batches)
    assert wrapper.replays == len(batches)  # every step ran from the graph
    assert graphed_losses == pytest.approx(eager_losses, rel=2e-2, abs=2e-3)
    eager_state, graphed_state = eager_model.state_dict(), graphed_model.state_dict()
    for name, value in eager_state.items():
        if value.is_floating_point():  # weights and BatchNorm statistics alike
            scale = value.abs().max().clamp(min=1e-3)
            difference = (graphed_state[name] - value).abs().max() / scale
            assert difference < 2e-2, name
        else:  # num_batches_tracked: the recording's warm-up runs do not count
            assert torch.equal(graphed_state[name], value), name


@needs_gpu
def test_a_batch_of_another_shape_runs_eagerly():
    model, _ = _twin_models("resnet10t")
    batches = _batches(2) + _batches(1, batch=8)
    wrapper, losses = _train(model, True, "adam", batches)
    assert wrapper.replays == 2 and all(torch.isfinite(torch.tensor(losses)))


@needs_gpu
def test_an_optimizer_that_swaps_parameter_tensors_turns_the_graph_off(caplog):
    model, twin = _twin_models("resnet10t")
    wrapper = GraphedTraining(model, "swapping")
    runtime = Runtime.create("cuda", cuda_graphs=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    job = SimpleNamespace(
        train_model=wrapper, loss_fn=F.binary_cross_entropy_with_logits, optimizer=optimizer
    )
    batches = _batches(3)
    with caplog.at_level(logging.WARNING):
        for x, y in batches:
            train_step(job, x, y, runtime)
            with torch.no_grad():  # as libauc's PESG does: p.data = <a new tensor>
                for p in model.parameters():
                    p.data = p.data.clone()
    assert wrapper.given_up and wrapper.replays == 1
    assert "replaced parameter tensors" in caplog.text
