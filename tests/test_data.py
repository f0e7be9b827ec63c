"""The image cache and the batch path: decode once, gather rows, augment on the device."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from deepauc.config.settings import AugmentSettings
from deepauc.data.cache import build_cache, load_image, open_cache
from deepauc.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CachedSplit,
    affine,
    augment_generator,
    collate_batch,
    random_affine,
    to_model_input,
)
from deepauc.errors import InputError

SIZE = 24


@pytest.fixture
def split(tmp_path):
    """Six JPEGs of different sizes, each a flat gray level, plus a blank and a partial label."""
    rows = []
    for i, (height, width) in enumerate(
        [(40, 30), (30, 40), (24, 24), (100, 80), (50, 50), (9, 60)]
    ):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(np.full((height, width, 3), 20 + 40 * i, np.uint8)).save(path, quality=95)
        rows.append({"image": str(path), "A": float(i % 2), "B": [1.0, np.nan][i % 2]})
    table = pd.DataFrame(rows)
    cache = tmp_path / "cache.npy"
    build_cache(table["image"].tolist(), SIZE, cache, workers=2)
    return CachedSplit(table, cache)


def test_cache_holds_each_image_once_in_table_order(split):
    cache = open_cache(split.cache, len(split.table), SIZE)
    assert cache.shape == (6, SIZE, SIZE) and cache.dtype == np.uint8
    assert isinstance(cache, np.memmap)  # mapped, not read into memory
    for i, path in enumerate(split.table["image"]):
        np.testing.assert_array_equal(cache[i], load_image(path, SIZE))
        assert abs(int(cache[i].mean()) - (20 + 40 * i)) <= 2


def test_cache_of_a_bad_image_leaves_no_file(tmp_path, split):
    images = [*split.table["image"], str(tmp_path / "missing.jpg")]
    with pytest.raises(InputError, match="missing.jpg") as err:
        build_cache(images, SIZE, tmp_path / "broken.npy", label="train")
    assert "train table, image 7" in str(err.value) and "check_images" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir() if "broken" in p.name) == []


@pytest.mark.parametrize("rows, size", [(5, SIZE), (6, 32)])
def test_cache_of_another_table_or_size_is_refused(split, rows, size):
    with pytest.raises(InputError, match="delete it and rerun") as err:
        open_cache(split.cache, rows, size)
    assert str(split.cache) in str(err.value)


def test_unreadable_cache_is_refused(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(InputError, match="cannot read image cache"):
        open_cache(tmp_path / "bad.npy", 1, SIZE)


def test_images_gather_kept_rows_with_their_targets(split):
    keep = split.table["B"].notna()
    images = split.images(["A", "B"], SIZE, keep=keep)
    assert len(images) == 3
    batch, targets = images.__getitems__([2, 0])
    cache = open_cache(split.cache, 6, SIZE)
    np.testing.assert_array_equal(batch.numpy(), cache[[4, 0]])
    np.testing.assert_array_equal(targets.numpy(), [[0, 1], [0, 1]])
    single, target = images[1]
    np.testing.assert_array_equal(single.numpy(), cache[2])


def test_loader_workers_see_the_same_batches(split):
    images = split.images(["A", "B"], SIZE)

    def batches(workers):
        loader = DataLoader(images, batch_size=4, num_workers=workers, collate_fn=collate_batch)
        return [(x.clone(), y.clone()) for x, y in loader]

    for (x0, y0), (x2, y2) in zip(batches(0), batches(2), strict=True):
        assert x0.dtype == torch.uint8 and x0.shape[1:] == (SIZE, SIZE)
        assert torch.equal(x0, x2) and torch.equal(y0.nan_to_num(-1), y2.nan_to_num(-1))
    assert images.__getstate__()["_images"] is None  # never pickled into a worker


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_images_moved_to_a_device_gather_the_same_batches(split, device):
    keep = split.table["B"].notna()
    host = split.images(["A", "B"], SIZE, keep=keep)
    moved = split.images(["A", "B"], SIZE, keep=keep)
    moved.move_to(torch.device(device), chunk=2)  # chunks smaller than the split
    assert moved.nbytes == 3 * SIZE * SIZE
    for indices in ([2, 0, 1], [1]):
        images, targets = moved.__getitems__(indices)
        assert images.device.type == device and images.dtype == torch.uint8
        expected_images, expected_targets = host.__getitems__(indices)
        assert torch.equal(images.cpu(), expected_images)
        assert torch.equal(targets.cpu(), expected_targets)


def test_affine_matches_torchvision_on_a_batch():
    torch.manual_seed(0)
    images = torch.rand(2, 1, 32, 32)
    ours = affine(
        images,
        angle=torch.tensor([20.0, -35.0]),
        scale=torch.tensor([1.1, 0.9]),
        shift=torch.tensor([[3 / 32, -2 / 32], [0.0, 5 / 32]]),
        flip=torch.tensor([False, False]),
    )
    for i, (angle, scale, shift) in enumerate([(20, 1.1, [3, -2]), (-35, 0.9, [0, 5])]):
        reference = TF.affine(
            images[i],
            angle=angle,
            translate=shift,
            scale=scale,
            shear=[0.0, 0.0],
            interpolation=TF.InterpolationMode.BILINEAR,
        )
        torch.testing.assert_close(ours[i], reference, atol=1e-5, rtol=0)


def test_flip_mirrors_and_identity_keeps():
    images = torch.rand(2, 1, 8, 8)
    out = affine(images, torch.zeros(2), torch.ones(2), torch.zeros(2, 2), torch.tensor([1, 0]) > 0)
    assert torch.equal(out[0], images[0].flip(-1)) and torch.equal(out[1], images[1])


def test_random_affine_follows_its_generator_and_ranges():
    images = torch.rand(16, 1, 16, 16)
    settings = AugmentSettings(rotation=10, translate=0.1, scale=(0.9, 1.1), hflip=True)
    first = random_affine(images, settings, augment_generator(torch.device("cpu"), 0))
    again = random_affine(images, settings, augment_generator(torch.device("cpu"), 0))
    other = random_affine(images, settings, augment_generator(torch.device("cpu"), 1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.allclose(first, images)


def test_model_input_is_normalised_three_channel_float():
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    batch = to_model_input(images, torch.device("cpu"))
    assert batch.shape == (1, 3, 2, 2) and batch.dtype == torch.float32
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)):
        expected = (images[0].float() / 255 - mean) / std
        torch.testing.assert_close(batch[0, channel], expected)
    # Augmentation that cannot move a pixel is skipped, not approximated.
    identity = AugmentSettings(rotation=0, translate=0, scale=(1, 1))
    generator = augment_generator(torch.device("cpu"), 0)
    assert torch.equal(to_model_input(images, torch.device("cpu"), identity, generator), batch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_batch_path_matches_cpu():
    images = torch.randint(0, 256, (8, 32, 32), dtype=torch.uint8)
    cuda = torch.device("cuda")
    on_gpu = to_model_input(images.pin_memory(), cuda)
    assert on_gpu.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(on_gpu.cpu(), to_model_input(images, torch.device("cpu")))
    angle, scale = torch.full((8,), 12.0), torch.full((8,), 1.05)
    shift, flip = torch.full((8, 2), 0.03), torch.zeros(8, dtype=torch.bool)
    pixels = images.unsqueeze(1).float() / 255
    torch.testing.assert_close(
        affine(
            pixels.to(cuda), angle.to(cuda), scale.to(cuda), shift.to(cuda), flip.to(cuda)
        ).cpu(),
        affine(pixels, angle, scale, shift, flip),
        atol=1e-4,
        rtol=0,
    )
