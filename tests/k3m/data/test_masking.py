import numpy as np

from k3m.data.masking import IGNORE, item_rng, mlm_mask, mom_mask

MASK_ID = 4
RANDOM_IDS = np.arange(5, 1000)


def draw(ids, candidates, seed, prob=0.15):
    return mlm_mask(ids, candidates, np.random.default_rng(seed), prob, 0.8, 0.1, MASK_ID, RANDOM_IDS)


def test_bert_proportions_and_targets_only_at_candidates():
    ids = np.arange(100, 140)
    candidates = np.ones(40, dtype=bool)
    candidates[[0, 39, 7, 8]] = False  # e.g. [CLS], [SEP], separators
    chosen = masked = swapped = kept = 0
    for seed in range(2000):
        out, labels = draw(ids, candidates, seed)
        target = labels != IGNORE
        assert not target[~candidates].any() and (out[~candidates] == ids[~candidates]).all()
        assert (labels[target] == ids[target]).all() and (out[~target] == ids[~target]).all()
        chosen += target.sum()
        masked += (out[target] == MASK_ID).sum()
        kept += (out[target] == ids[target]).sum()
        swapped += ((out[target] != MASK_ID) & (out[target] != ids[target])).sum()
        assert np.isin(out[target & (out != MASK_ID) & (out != ids)], RANDOM_IDS).all()
    assert abs(chosen / (2000 * 36) - 0.15) < 0.01
    assert abs(masked / chosen - 0.8) < 0.02 and abs(swapped / chosen - 0.1) < 0.015
    assert abs(kept / chosen - 0.1) < 0.015  # a random draw equal to the token is vanishingly rare here


def test_every_sequence_with_a_candidate_gets_a_target():
    ids = np.arange(10, 14)
    candidates = np.array([False, True, False, False])
    for seed in range(200):
        _, labels = draw(ids, candidates, seed, prob=0.01)
        assert (labels != IGNORE).tolist() == candidates.tolist()
    _, labels = draw(ids, np.zeros(4, dtype=bool), 0)
    assert (labels == IGNORE).all()


def test_masks_are_keyed_by_seed_epoch_row():
    ids, candidates = np.arange(50), np.ones(50, dtype=bool)
    a = mlm_mask(ids, candidates, item_rng(1, 2, 3, 1), 0.15, 0.8, 0.1, MASK_ID, RANDOM_IDS)
    b = mlm_mask(ids, candidates, item_rng(1, 2, 3, 1), 0.15, 0.8, 0.1, MASK_ID, RANDOM_IDS)
    c = mlm_mask(ids, candidates, item_rng(1, 3, 3, 1), 0.15, 0.8, 0.1, MASK_ID, RANDOM_IDS)
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (a[1] == c[1]).all()  # another epoch, other targets


def test_mom_masks_about_15_percent_never_none():
    for seed in range(50):
        assert mom_mask(64, np.random.default_rng(seed), 0.15).sum() == 10
        assert mom_mask(4, np.random.default_rng(seed), 0.15).sum() == 1
