"""Image encoders behind one interface: patches, CNN grid, precomputed regions."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision

from encoders.image import CNNGridEncoder, PatchImageEncoder, RegionImageEncoder, build_image_encoder
from encoders.image.region_file import RegionFeatureFile, box_locations
from encoders.weights import CheckpointMismatchError
from k3m.model.configuration import ImageConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def real_pixels(slice_build):
    """Three real fashion44k product images from the build's image store, [3, 3, 64, 64]
    (resized as the input adapter does: the build stores 96 px, the default encoders read 64)."""
    from k3m.data.adapters.tokens import resize_pixels

    images = np.array(slice_build.images[:3])  # a writable copy of the memory map
    assert images.std() > 10
    return resize_pixels(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), 64)


def test_patches_positions_targets_and_presence(real_pixels):
    torch.manual_seed(0)
    config = ImageConfig()
    encoder = build_image_encoder(config)
    assert isinstance(encoder, PatchImageEncoder) and config.num_visual_tokens == 64
    present = torch.tensor([True, False, True])
    mom = torch.zeros(3, 64, dtype=torch.bool)
    mom[:, 9] = True
    out = encoder(SimpleNamespace(pixels=real_pixels), present, mom)
    assert out.tokens.shape == (3, 65, config.hidden_size) and out.mask.shape == (3, 65)
    assert not out.mask[1].any() and out.mask[0].all()  # absent image: no real token at all
    assert torch.equal(out.target_mask[:, 9], present) and out.target_mask.sum() == 2
    # patch 9 = row 1, column 1 of the 8x8 grid, normalised to [-1, 1], channels first
    block = real_pixels[0, :, 8:16, 8:16].float() / 127.5 - 1
    torch.testing.assert_close(out.target[0, 9], block.reshape(-1))
    # MOM masking changes what the model sees of patch 9 (token 10, after the global one)
    # and nothing of the other patches
    encoder.eval()
    masked = encoder(SimpleNamespace(pixels=real_pixels), present, mom)
    seen = encoder(SimpleNamespace(pixels=real_pixels), present, None)
    assert not torch.allclose(masked.tokens[0, 10], seen.tokens[0, 10])
    torch.testing.assert_close(masked.tokens[0, 11:], seen.tokens[0, 11:])
    with pytest.raises(ValueError, match="image.image_size"):
        encoder(SimpleNamespace(pixels=real_pixels[:, :, :32, :32]), present)


def test_cnn_grid_and_local_backbone_weights(real_pixels, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    config = ImageConfig(kind="cnn", cnn_weights=str(weights))
    encoder = CNNGridEncoder(config)
    assert torch.equal(encoder.backbone[0].weight, torch.load(weights)["conv1.weight"])
    out = encoder(SimpleNamespace(pixels=real_pixels), torch.tensor([True, True, False]))
    assert config.num_visual_tokens == 4 and out.tokens.shape == (3, 5, config.hidden_size)
    assert out.target.shape == (3, 4, 512)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: layer1.2"):
        CNNGridEncoder(ImageConfig(kind="cnn", cnn_weights=str(tmp_path / "resnet34.pth")))


def test_region_file_layout_and_encoder(tmp_path):
    """The original K3M layout (36 x 2048, 5-d boxes, 1601 classes). No detector output is
    available offline, so the arrays are drawn at random; what is tested is the layout."""
    g = np.random.default_rng(0)
    N, R = 2, 36
    boxes = np.sort(g.uniform(0, 60, size=(N, R, 4)).astype(np.float32).reshape(N, R, 2, 2), axis=2).transpose(0, 1, 3, 2).reshape(N, R, 4)
    probs = g.dirichlet(np.ones(1601), size=(N, R)).astype(np.float32)
    RegionFeatureFile.write(tmp_path, ["15970", "39386"], g.random((N, R, 2048), dtype=np.float32), boxes, np.array([[60, 80], [60, 80]]), np.array([36, 10]), probs)
    loc = box_locations(boxes, np.array([[60, 80], [60, 80]]))
    x1, y1, x2, y2 = boxes[0, 0]
    np.testing.assert_allclose(loc[0, 0], [x1 / 60, y1 / 80, x2 / 60, y2 / 80, (x2 - x1) * (y2 - y1) / 4800], rtol=1e-6)

    arrays = RegionFeatureFile.open(tmp_path).lookup(["39386", "no-such-item", "15970"])
    assert arrays["features"].shape == (3, 36, 2048) and arrays["class_probs"].shape == (3, 36, 1601)
    assert arrays["mask"].sum(1).tolist() == [10, 0, 36] and not arrays["features"][1].any()
    regions = SimpleNamespace(**{k: torch.from_numpy(v) for k, v in arrays.items()})
    encoder = RegionImageEncoder(ImageConfig(kind="region"))
    mom = torch.zeros(3, 36, dtype=torch.bool)
    mom[:, :3] = True
    out = encoder(regions, regions.mask.any(-1), mom)
    assert out.tokens.shape == (3, 37, 128) and torch.equal(out.mask[:, 1:], regions.mask)
    assert out.target_mask.sum() == 6 and encoder.target_kind == "distribution"
    with pytest.raises(FileNotFoundError, match="not a region feature file"):
        RegionFeatureFile.open(tmp_path / "empty")
