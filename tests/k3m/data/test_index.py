"""index_for: the build's index as a model reads it."""
import numpy as np
import torch

from k3m.data import index_for
from k3m.data.index import FEATURES_DIR_ENV


def test_computing_features_leaves_the_random_state_alone(fashion_dir, frozen_config, tmp_path, monkeypatch):
    """A cold feature cache builds the encoders (whose initialisation draws random numbers):
    the model a seed gives afterwards must not depend on whether the cache was warm."""
    from etl.build import import_catalog

    build = tmp_path / "fashion40"
    import_catalog([fashion_dir / "styles.jsonl.gz"], "fashion44k", build, limit=40)
    monkeypatch.setenv(FEATURES_DIR_ENV, str(tmp_path / "features"))  # empty: every feature is computed
    torch.manual_seed(0)
    before = torch.get_rng_state()
    index = index_for(build, frozen_config, progress=False)
    assert index.features is not None and np.asarray(index.has_image).any()
    assert torch.equal(torch.get_rng_state(), before)
