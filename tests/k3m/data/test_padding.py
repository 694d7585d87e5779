import numpy as np

from k3m.data.padding import pad


def test_rows_padded_to_the_longest_or_a_given_width():
    ids, mask = pad([np.array([5, 6, 7]), np.array([], np.int64), np.array([9])], fill=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 0], [9, 0, 0]] and mask.sum(1).tolist() == [3, 0, 1]
    ids, mask = pad([np.array([1])], width=4, fill=-100)
    assert ids.tolist() == [[1, -100, -100, -100]] and mask.tolist() == [[True, False, False, False]]


def test_feature_rows_and_a_batch_without_any_entry():
    rows = [np.ones((2, 3), np.float16), np.zeros((0, 3), np.float16)]
    out, mask = pad(rows, fill=0.0, dtype=np.float32, tail=(3,))
    assert out.shape == (2, 2, 3) and out.dtype == np.float32 and out[0].sum() == 6 and not mask[1].any()
    out, mask = pad([np.zeros((0, 3))], fill=0.0, dtype=np.float32, tail=(3,))
    assert out.shape == (1, 1, 3) and not mask.any()  # width at least 1
