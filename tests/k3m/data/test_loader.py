import numpy as np

from k3m.data import EpochBatchSampler, K3MDataset


def rows_of(batches):
    return [row for batch in batches for _, row in batch]


def test_epochs_shuffle_and_resume_mid_epoch(slice_build, slice_index):
    dataset = K3MDataset(slice_index, slice_build.item_indices("train"), max_pairs=10)
    sampler = EpochBatchSampler(dataset, 32, seed=5)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    assert len(epoch0) == len(dataset) // 32 == len(sampler)
    assert all(len(b) == 32 and all(e == 0 for e, _ in b) for b in epoch0)
    assert len(set(rows_of(epoch0))) == 32 * len(epoch0) and set(rows_of(epoch0)) <= set(dataset.rows.tolist())
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert rows_of(epoch1) != rows_of(epoch0) and all(e == 1 for e, _ in epoch1[0])
    sampler.set_epoch(1, start_batch=5)
    assert list(sampler) == epoch1[5:] and len(sampler) == len(epoch1) - 5


def test_shards_are_disjoint_and_cover_the_split(slice_build, slice_index):
    dataset = K3MDataset(slice_index, slice_build.item_indices("valid"), max_pairs=10)
    shards = []
    for rank in range(2):
        sampler = EpochBatchSampler(dataset, 8, shuffle=False, drop_last=False, num_replicas=2, rank=rank)
        shards.append(rows_of(sampler))
    assert len(shards[0]) == len(shards[1]) == -(-len(dataset) // 2)  # padded to equal length
    assert set(shards[0]) | set(shards[1]) == set(dataset.rows.tolist())
    assert len(set(shards[0]) & set(shards[1])) <= 1  # only the padding repeats


def test_epochs_hold_whole_accumulation_steps(slice_build, slice_index):
    dataset = K3MDataset(slice_index, slice_build.item_indices("train"), max_pairs=10)
    full = len(dataset) // 16
    sampler = EpochBatchSampler(dataset, 16, multiple_of=4)
    assert sampler.batches_per_epoch() == full - full % 4 and len(list(sampler)) == full - full % 4
    assert np.all(np.diff([len(b) for b in sampler]) == 0)


def test_index_orders_pairs_frequent_properties_first(slice_build, slice_index):
    import numpy as np

    from k3m.data import CatalogIndex

    train = slice_build.train_triples()
    freq = np.bincount(train[:, 1], minlength=len(slice_build.properties))
    for row in slice_build.item_indices("train")[:50]:
        pairs = slice_index.pairs(int(row))
        assert sorted(map(tuple, pairs.tolist())) == sorted(map(tuple, train[train[:, 0] == row, 1:].tolist()))
        assert np.all(np.diff(-freq[pairs[:, 0]]) >= 0)
    every = CatalogIndex.from_build(slice_build, facts="all")
    assert len(every.pair_table) == len(slice_build.triples) > len(slice_index.pair_table)


def test_index_follows_a_given_property_order(slice_build, slice_index):
    """A checkpoint's property order wins over the build's frequencies (an item keeps its pair
    order in a grown catalog); properties it does not name follow, most frequent first."""
    import numpy as np

    from k3m.data import CatalogIndex

    order = slice_index.property_order
    assert sorted(order) == sorted(slice_build.properties) and len(order) == len(set(order))
    assert CatalogIndex.from_build(slice_build, property_order=order).property_order == order
    given = order[::-1][:5] + ["no such property"]  # the five rarest first, an unknown name ignored
    index = CatalogIndex.from_build(slice_build, property_order=given)
    assert index.property_order == order[::-1][:5] + [p for p in order if p not in given]
    rank = {slice_build.properties.index(name): i for i, name in enumerate(index.property_order)}
    for row in slice_build.item_indices("train")[:50]:
        pairs = index.pairs(int(row))
        assert sorted(map(tuple, pairs.tolist())) == sorted(map(tuple, slice_index.pairs(int(row)).tolist()))
        assert np.all(np.diff([rank[p] for p in pairs[:, 0].tolist()]) >= 0)
