"""FeatureStem (frozen encoders): the streams it makes, and each modality's cached features
pooled (what an item representation can keep of its inputs)."""
import numpy as np
import pytest
import torch

from k3m.data import Corruption, K3MCollator, K3MDataset
from k3m.model import K3MModel
from k3m.model.stems import FeatureStem, build_stem

pytestmark = pytest.mark.usefixtures("single_thread")


def test_pooled_features_are_the_items_own_cached_features(frozen_slice_index, frozen_config, slice_build):
    f = frozen_slice_index.features
    rows = slice_build.item_indices("test")[:6]
    corruption = Corruption.for_items(frozen_slice_index.num_items, rows, title_source=np.where(np.arange(6) == 1, -1, rows),
                                      image_source=np.where(np.arange(6) == 2, -1, rows),
                                      knowledge_present=np.arange(6) != 3)
    dataset = K3MDataset(frozen_slice_index, rows, max_pairs=frozen_config.text.max_pairs, corruption=corruption)
    batch = K3MCollator(dataset, None, frozen_config, targets=False)([dataset[int(r)] for r in rows])
    stem = build_stem(frozen_config)
    assert isinstance(stem, FeatureStem)
    pooled = stem.pooled_features(batch)
    title, title_present = pooled["title"]
    assert title_present.tolist() == [True, False, True, True, True, True] and not title[1].any()
    keep = title_present.numpy()
    torch.testing.assert_close(title[keep], torch.from_numpy(f.title_vectors(rows[keep])), atol=1e-3, rtol=1e-3)
    image, image_present = pooled["image"]
    assert image.shape == (6, 1280) and image_present.tolist() == [True, True, False, True, True, True] and not image[2].any()
    keep = image_present.numpy()
    torch.testing.assert_close(image[keep], torch.from_numpy(f.image_grid(rows[keep]).astype(np.float32).mean(1)))
    knowledge, knowledge_present = pooled["knowledge"]
    assert not knowledge_present[3] and not knowledge[3].any()
    pairs = dataset[int(rows[0])].pairs
    torch.testing.assert_close(knowledge[0], torch.from_numpy(f.pair_vectors(pairs[:, 0], pairs[:, 1]).astype(np.float32).mean(0)))


def test_streams_and_the_models_stem(frozen_slice_index, frozen_config, slice_build):
    rows = slice_build.item_indices("train")[:4]
    dataset = K3MDataset(frozen_slice_index, rows, max_pairs=frozen_config.text.max_pairs)
    batch = K3MCollator(dataset, None, frozen_config, targets=True)([dataset[int(r)] for r in rows])
    model = K3MModel(frozen_config)
    out = model.stem(batch)
    assert list(out.streams) == ["title", "image", "knowledge"]
    H = frozen_config.hidden_size
    assert out.streams["title"].tokens.shape[-1] == out.streams["knowledge"].tokens.shape[-1] == H
    assert out.streams["image"].tokens.shape[1] == 1 + frozen_config.num_visual_tokens  # the global token first
    props, values = model.stem.vocabulary(batch)
    assert props.shape == (batch.lpm.property_ids.numel(), H) and values.shape == (batch.lpm.value_ids.numel(), H)
    with pytest.raises(RuntimeError, match="encoders: frozen"):
        model.encode_strings(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))
