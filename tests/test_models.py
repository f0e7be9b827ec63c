"""The model factory: every family of the write-up, at the quick start's size, with any weights."""

import pytest
import timm
import torch

from deepauc.errors import InputError
from deepauc.models.build import create_model, replace_head
from deepauc.models.checkpoints import save_model

FAMILIES = ["convnext_tiny", "densenet169", "swin_tiny_patch4_window7_224", "davit_tiny"]


@pytest.mark.parametrize("arch", FAMILIES)
def test_each_family_builds_and_takes_a_training_step_at_quick_start_size(arch):
    torch.manual_seed(0)
    model = create_model(arch, num_outputs=5, image_size=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    before = [p.detach().clone() for p in model.get_classifier().parameters()]
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2, 5)).backward()
    optimizer.step()
    after = list(model.get_classifier().parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_swin_gets_windows_that_tile_small_images():
    model = create_model("swin_tiny_patch4_window7_224", num_outputs=1, image_size=128)
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 1)
    with pytest.raises(InputError, match="divisible by 32"):
        create_model("swin_tiny_patch4_window7_224", num_outputs=1, image_size=100)


def test_replace_head_keeps_the_backbone_and_resets_the_head():
    torch.manual_seed(0)
    model = create_model("resnet10t", num_outputs=5, image_size=64)
    for p in model.parameters():  # make every weight recognisable
        torch.nn.init.constant_(p, 0.5)
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    replace_head(model, 1)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    head = model.get_classifier()
    assert head.out_features == 1
    assert not torch.all(head.weight == 0.5)  # freshly initialised, not carried over
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)


def test_local_weights_file_and_folder(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet10t", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    for where in (tmp_path / "resnet10t.pth", tmp_path):
        model = create_model("resnet10t", num_outputs=3, image_size=64, pretrained=str(where))
        assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
        assert model.get_classifier().out_features == 3


def test_a_weights_file_whose_keys_match_nothing_is_refused_not_loaded_silently(tmp_path, caplog):
    """timm loads with strict=False when the head's size differs, so a file saved under a
    prefix ('model.') would start the network from random weights without a word."""
    from safetensors.torch import save_file

    source = timm.create_model("resnet10t", num_classes=0)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file({f"model.{k}": v for k, v in state.items()}, tmp_path / "resnet10t.safetensors")
    with pytest.raises(
        InputError,
        match=r"(?s)only 0 of resnet10t's \d+ backbone tensors.*"
        r"without a prefix such as 'model.'",
    ):
        create_model("resnet10t", num_outputs=5, image_size=64, pretrained=str(tmp_path))
    # the same weights without the prefix and without a head (a surrogate's): loaded, no warning
    save_file(state, tmp_path / "resnet10t.safetensors")
    model = create_model("resnet10t", num_outputs=5, image_size=64, pretrained=str(tmp_path))
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
    assert "backbone tensors not in" not in caplog.text


def test_another_runs_warmups_are_weights_with_an_arch_placeholder(tmp_path):
    """What config/dam_study.yaml does: each family starts from its pretraining run's warm-up."""
    torch.manual_seed(1)
    warm = create_model("resnet10t", num_outputs=5, image_size=64)
    path = tmp_path / "models" / "resnet10t" / "seed0" / "warmup.pt"
    meta = {"arch": "resnet10t", "image_size": 64, "outputs": list("abcde"), "stage": "warmup"}
    save_model(path, warm.state_dict(), meta)
    pattern = str(tmp_path / "models" / "{arch}" / "seed0" / "warmup.pt")
    model = create_model("resnet10t", num_outputs=5, image_size=64, pretrained=pattern)
    assert torch.equal(model.conv1[0].weight, warm.conv1[0].weight)


def test_missing_weights_say_how_to_pass_a_file(tmp_path):
    with pytest.raises(InputError, match=r"(?s)no weights for 'resnet10t'.*resnet10t.safetensors"):
        create_model("resnet10t", 1, 64, pretrained=str(tmp_path))
    with pytest.raises(InputError, match="does not exist"):
        create_model("resnet10t", 1, 64, pretrained=str(tmp_path / "nope.pth"))


def test_unreachable_hub_says_how_to_pass_a_local_file(monkeypatch):
    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to the model hub")
        return original(*args, **kwargs)

    original = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(InputError, match=r"(?s)pretrained weights.*set pretrained to the file"):
        create_model("resnet10t", 1, 64, pretrained=True)


def test_unknown_architecture_is_named_with_the_closest_names():
    with pytest.raises(InputError, match="unknown timm model 'resnet_9000'"):
        create_model("resnet_9000", 1, 64)
    with pytest.raises(InputError, match="did you mean .*densenet169"):
        create_model("densenet_169", 1, 64)


def test_a_warm_up_head_starts_at_zero_from_pretrained_weights_only():
    from deepauc.models.build import create_model, zero_head
    from deepauc.training.stages import head_starts_at_zero

    assert head_starts_at_zero("auto", "results/models/{arch}/seed0/warmup.pt")
    assert head_starts_at_zero("auto", True)
    assert not head_starts_at_zero("auto", False)  # from scratch: drawn from the seed
    assert head_starts_at_zero("zeros", False) and not head_starts_at_zero("random", True)
    model = zero_head(create_model("resnet10t", 5, 32))
    head = model.get_classifier()
    assert not head.weight.any() and not head.bias.any()
    assert model(torch.zeros(2, 3, 32, 32)).abs().max() == 0  # every logit 0: seeds alike
