import numpy as np
import pytest

from k3m.data import cap_report


def test_cap_report_accounts_for_every_pair(slice_build, slice_tokenizer):
    rows = slice_build.item_indices("train")
    train = slice_build.train_triples()
    expected = int(np.isin(train[:, 0], rows).sum())
    loose = cap_report(slice_build, slice_tokenizer, max_pairs=1000, max_tokens=4096)
    assert loose["pairs"] == expected
    assert loose["dropped_by_max_pairs"] == loose["dropped_by_max_tokens"] == 0
    report = cap_report(slice_build, slice_tokenizer, max_pairs=10, max_tokens=48)
    assert report["pairs"] == expected
    assert report["dropped_by_max_pairs"] > 0 and report["dropped_by_max_tokens"] > 0
    kept = report["pairs"] - report["dropped_by_max_pairs"] - report["dropped_by_max_tokens"]
    assert kept == pytest.approx(report["mean_kept_pairs"] * report["items"])
    assert sum(n for _, n in report["most_dropped_properties"]) <= report["pairs"] - kept
