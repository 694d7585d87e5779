"""NpyRows: a store's matrix read and written with positioned file I/O. A pass over every row
keeps one chunk in the process, where a memory map keeps every page it touched."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from k3m.embedding.npy_rows import NpyRows

REPO = Path(__file__).resolve().parents[3]


def test_rows_written_in_any_order_read_back_as_numpy_does(tmp_path):
    path = tmp_path / "m.npy"
    x = np.random.default_rng(0).standard_normal((5000, 24)).astype(np.float32)
    with NpyRows.create(path, x.shape, np.float16) as out:
        order = np.random.default_rng(1).permutation(len(x))
        for lo in range(0, len(x), 777):
            out.write(order[lo:lo + 777], x[order[lo:lo + 777]])
    stored = np.load(path)
    np.testing.assert_array_equal(stored, x.astype(np.float16))
    rows = NpyRows(path)
    assert rows.shape == (5000, 24) and len(rows) == 5000 and rows.dtype == np.float16
    picks = np.random.default_rng(2).choice(5000, 900)  # repeats, any order, runs and gaps
    np.testing.assert_array_equal(rows.take(picks), stored[picks])
    np.testing.assert_array_equal(rows[[4999, 0, 2500]], stored[[4999, 0, 2500]])
    np.testing.assert_array_equal(rows[4990:6000], stored[4990:])
    np.testing.assert_array_equal(rows[7], stored[7])
    np.testing.assert_array_equal(np.concatenate([c for _, c in rows.chunks(333)]), stored)
    saved = tmp_path / "saved.npy"  # a file np.save wrote (format 1.0)
    np.save(saved, x)
    np.testing.assert_array_equal(NpyRows(saved).take(picks), x[picks])


PASS = """
import sys, numpy as np
from k3m.embedding.npy_rows import NpyRows
path, how = sys.argv[1], sys.argv[2]
total = 0.0
if how == "mapped":
    m = np.load(path, mmap_mode="r")
    for lo in range(0, len(m), 4096):
        total += float(np.asarray(m[lo:lo + 4096], np.float32).sum())
else:
    for _, chunk in NpyRows(path).chunks(4096):
        total += float(chunk.sum())
rss = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(("VmHWM", "RssFile"))}
print(rss["VmHWM"] // 1024, rss["RssFile"] // 1024)
"""


def test_a_pass_over_the_file_keeps_one_chunk_resident(tmp_path):
    path = tmp_path / "big.npy"
    with NpyRows.create(path, (100_000, 512), np.float32) as out:  # 195 MB
        for lo in range(0, 100_000, 10_000):
            out.write(np.arange(lo, lo + 10_000), np.ones((10_000, 512), np.float32))

    def peak(how):
        done = subprocess.run([sys.executable, "-c", PASS, str(path), how], capture_output=True, text=True, check=True,
                              cwd=REPO)
        return [int(v) for v in done.stdout.split()]

    (mapped_hwm, mapped_file), (read_hwm, read_file) = peak("mapped"), peak("read")
    assert mapped_file > 150  # the memory map leaves the file's pages in the process
    assert read_file < 60 and read_hwm < mapped_hwm - 100
