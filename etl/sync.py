"""What an update changes: ``k3m import --update BUILD`` against the build it replaces.

An update is an import whose ids stay valid: the previous build's vocabularies are kept in
their order and new names appended (sorted among themselves), items keep their split, and
unchanged images are copied instead of decoded again (:mod:`etl.build`). This module holds
the two pieces that read the previous build: the grown vocabularies and the diff written to
``BUILD/sync.json``::

    format                     1
    previous_manifest_sha256   sha256 of the replaced build's manifest.json
    manifest_sha256            sha256 of this build's manifest.json
    counts                     {added, changed, removed, unchanged} items
    changed_fields             {title, category, group, image, triples, held_out}: changed
                               items per field (an item can count under several)
    added / changed / removed  item ids (changed: everything a model reads or the graph
                               stores of the item may differ)

``held_out`` counts items whose facts did not change but whose train/held-out split of them
did (the held-out sample is a function of the whole catalog, see :mod:`etl.splits`): their
model input changed, their graph did not. ``removed_by_rejects`` lists the removed items
whose rows the new version has but rejected (only with ``--allow-removals``, see below).

Nothing is lost silently (:func:`review_removals`, :func:`mapping_differences`): an update
is refused, the build left as it was, when

* an item of the previous version would be removed because its row in the new version was
  rejected (a row whose bytes are not UTF-8, a broken knowledge text, ...), or
* it removes more than ``MAX_REMOVED_FRACTION`` of the previous version's items (a
  truncated or partial export),

unless the user says ``allow_removals`` (``--allow-removals``); it is then applied with a
warning. It is refused too when the mapping is not the one the build was imported with
(every item would change by the mapping, not by the catalog) unless ``mapping_changed``
(``--mapping-changed``). Duplicate ids and rejected rows without a readable id are warnings.

The stores downstream apply exactly this diff when they hold the previous build
(``k3m kg load``), and ``k3m embed`` recomputes only items whose input changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from etl.catalog_build import TRIPLE_TRAIN, CatalogBuild

SYNC_FILE = "sync.json"
FORMAT = 1
# an update removing more of the previous items than this is refused without allow_removals:
# daily changes are ~1%; a tenth of the catalog gone at once is a truncated or partial export
MAX_REMOVED_FRACTION = 0.10
# what a mapping says about items; its name, description, file and file digest do not count,
# and not_leakage only silences a warning
MAPPING_IGNORED = frozenset({"name", "description", "origin", "sha256", "not_leakage"})


def manifest_sha256(build_path: str | Path) -> str:
    return hashlib.sha256((Path(build_path) / "manifest.json").read_bytes()).hexdigest()


def grown_vocabulary(previous: list[str], ids: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """The previous names in their order, then the new ones sorted by code point; and
    provisional id -> position. Existing ids never move, so checkpoints, feature views and
    stored vectors indexed by them stay valid. A plain import has no previous names: its
    vocabularies are simply sorted."""
    known = set(previous)
    names = list(previous) + sorted(name for name in ids if name not in known)
    position = {name: i for i, name in enumerate(names)}
    remap = np.empty(len(ids), dtype=np.int32)
    for name, provisional in ids.items():
        remap[provisional] = position[name]
    return names, remap


def build_diff(previous: CatalogBuild, current: CatalogBuild) -> dict:
    """Added, changed and removed items of ``current`` against ``previous`` (see module doc).

    ``current``'s vocabularies extend ``previous``'s (an update), so property and value ids
    compare directly."""
    old_items, new_items = previous.items, current.items
    old_ids = old_items["item_id"].tolist()
    new_ids = new_items["item_id"].tolist()
    old_row = {item_id: row for row, item_id in enumerate(old_ids)}
    # new row -> old row (-1: added)
    to_old = np.fromiter((old_row.get(i, -1) for i in new_ids), dtype=np.int64, count=len(new_ids))
    kept = np.flatnonzero(to_old >= 0)
    kept_old = to_old[kept]
    changed = {}
    for column in ("title", "category", "group"):
        old = old_items[column].to_numpy(dtype=object)[kept_old]
        new = new_items[column].to_numpy(dtype=object)[kept]
        changed[column] = np.array([not _same(a, b) for a, b in zip(old, new)], dtype=bool)
    changed["image"] = _images_changed(previous, current, kept_old, kept)

    # facts as codes over the new build's rows and vocabularies (a superset of the old ones)
    num_p, num_v = max(len(current.properties), 1), max(len(current.values), 1)
    new_row_of_old = np.full(previous.num_items, -1, dtype=np.int64)
    new_row_of_old[kept_old] = kept

    def codes(triples: np.ndarray, rows: np.ndarray) -> np.ndarray:
        keep = rows >= 0
        t = triples[keep].astype(np.int64)
        return (rows[keep] * num_p + t[:, 1]) * num_v + t[:, 2]

    old_t, new_t = np.asarray(previous.triples), np.asarray(current.triples)
    old_codes = codes(old_t, new_row_of_old[old_t[:, 0]])
    new_codes = codes(new_t, new_t[:, 0].astype(np.int64))
    kept_mask = np.zeros(current.num_items, dtype=bool)
    kept_mask[kept] = True

    def rows_differing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        rows = np.zeros(current.num_items, dtype=bool)
        rows[np.setxor1d(a, b, assume_unique=True) // (num_p * num_v)] = True  # facts are unique
        return rows[kept]

    changed["triples"] = rows_differing(old_codes, new_codes)
    old_train = old_codes[np.asarray(previous.triple_split)[new_row_of_old[old_t[:, 0]] >= 0] == TRIPLE_TRAIN]
    new_train = new_codes[np.asarray(current.triple_split) == TRIPLE_TRAIN]
    changed["held_out"] = rows_differing(old_train, new_train) & ~changed["triples"]

    any_change = np.zeros(len(kept), dtype=bool)
    for flags in changed.values():
        any_change |= flags
    current_ids = set(new_ids)
    removed = [i for i in old_ids if i not in current_ids]
    return {
        "format": FORMAT,
        "previous_manifest_sha256": manifest_sha256(previous.path),
        "manifest_sha256": manifest_sha256(current.path),
        "counts": {"added": int(len(new_ids) - len(kept)), "changed": int(any_change.sum()),
                   "removed": len(removed), "unchanged": int(len(kept) - any_change.sum())},
        "changed_fields": {name: int(flags.sum()) for name, flags in changed.items()},
        "added": [new_ids[r] for r in np.flatnonzero(to_old < 0).tolist()],
        "changed": [new_ids[r] for r in kept[any_change].tolist()],
        "removed": removed,
    }


def _same(a, b) -> bool:
    a = a if isinstance(a, str) else None  # pandas reads a missing string as None or NaN
    b = b if isinstance(b, str) else None
    return a == b


def _images_changed(previous: CatalogBuild, current: CatalogBuild, old_rows: np.ndarray, new_rows: np.ndarray) -> np.ndarray:
    """By the files' digests where both builds have them, else by the stored pixels."""
    old_items, new_items = previous.items, current.items
    old_status = old_items["image_status"].to_numpy(dtype=object)[old_rows]
    new_status = new_items["image_status"].to_numpy(dtype=object)[new_rows]
    changed = old_status != new_status
    if "image_digest" in old_items and "image_digest" in new_items:
        old_digest = old_items["image_digest"].to_numpy(dtype=object)[old_rows]
        new_digest = new_items["image_digest"].to_numpy(dtype=object)[new_rows]
        digests = np.array([isinstance(a, str) and isinstance(b, str) for a, b in zip(old_digest, new_digest)], dtype=bool)
        changed |= digests & (old_digest != new_digest)
    else:
        digests = np.zeros(len(new_rows), dtype=bool)
    compare = np.flatnonzero(~changed & ~digests & (new_status == "ok"))
    old_images, new_images = previous.images, current.images
    for lo in range(0, len(compare), 4096):
        part = compare[lo:lo + 4096]
        same = (np.asarray(old_images[old_rows[part]]) == np.asarray(new_images[new_rows[part]])).reshape(len(part), -1).all(1)
        changed[part[~same]] = True
    return changed


def mapping_digest(mapping: dict) -> str:
    """sha256 of what a resolved mapping (``Mapping.to_dict()`` or a manifest's ``mapping``)
    says about items, recorded in the manifest as ``mapping_digest``."""
    return hashlib.sha256(_canonical(mapping).encode()).hexdigest()


def mapping_differences(previous: dict, current: dict) -> list[str]:
    """The keys in which two resolved mappings differ in what they say about items."""
    keys = (set(previous) | set(current)) - MAPPING_IGNORED
    return sorted(k for k in keys if _canonical({k: previous.get(k)}) != _canonical({k: current.get(k)}))


def _canonical(mapping: dict) -> str:
    return json.dumps({k: v for k, v in mapping.items() if k not in MAPPING_IGNORED}, sort_keys=True, ensure_ascii=False)


def review_removals(previous_items: int, diff: dict, rejected_ids: dict, rejected_without_id: int,
                    duplicates: int, allow: bool) -> dict:
    """What an update would lose, said loudly (see the module docstring).

    ``rejected_ids``: id -> {source, line, reason, detail} of the new version's rejected rows
    whose id could be read. Returns ``removed_by_rejects`` ({reason: n}), ``removed_by_rejects_ids``,
    ``warnings`` (lines) and ``refusal`` (a message, or None when the update may go on)."""
    removed = diff["removed"]
    lost = [(item_id, rejected_ids[item_id]) for item_id in removed if item_id in rejected_ids]
    by_reason = Counter(where["reason"] for _, where in lost)
    problems, warnings = [], []
    if lost:
        first_id, first = lost[0]
        problems.append(
            f"{len(lost)} item(s) of the previous version would be removed because their rows in the new version were "
            f"rejected ({_counts(by_reason)}; the first: {first['source']}:{first['line']}, id {first_id!r}, "
            f"{first['reason']}: {first['detail']})")
    fraction = len(removed) / previous_items if previous_items else 0.0
    if fraction > MAX_REMOVED_FRACTION:
        problems.append(f"the new version removes {len(removed)} of the {previous_items} items "
                        f"({100 * fraction:.0f}%; more than {100 * MAX_REMOVED_FRACTION:.0f}% in one update looks like "
                        f"a truncated or partial export)")
    if allow:
        warnings += [f"{p}: applied (--allow-removals)" for p in problems]
    if rejected_without_id and removed:
        warnings.append(f"{rejected_without_id} rejected row(s) carry no readable id and {len(removed)} item(s) were "
                        f"removed: some of those items may be these rows")
    if duplicates:
        warnings.append(f"{duplicates} row(s) repeat an id read before (duplicate_id): the first row of each id was "
                        f"used, the others are in rejects.jsonl")
    refusal = None
    if problems and not allow:
        refusal = "; and ".join(problems)
    return {"removed_by_rejects": dict(sorted(by_reason.items())), "removed_by_rejects_ids": [i for i, _ in lost],
            "warnings": warnings, "refusal": refusal}


def _counts(counter) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))


def write_sync(work: Path, diff: dict) -> None:
    (work / SYNC_FILE).write_text(json.dumps(diff, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def read_sync(build_path: str | Path) -> dict | None:
    """The build's ``sync.json``, or None for a build made by a plain import."""
    path = Path(build_path) / SYNC_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# what an import writes; anything else in a build was put there by a later stage
IMPORT_FILES = frozenset({
    "manifest.json", "summary.json", "rejects.jsonl", "items.parquet", "properties.json", "values.json",
    "categories.json", "triples.npy", "triple_split.npy", "images.npy", SYNC_FILE,
})


def current_sync(build: CatalogBuild) -> dict | None:
    """The build's ``sync.json`` when it describes this very build (not one replaced since)."""
    sync = read_sync(build.path)
    if sync is None or sync.get("format") != FORMAT or sync.get("manifest_sha256") != manifest_sha256(build.path):
        return None
    return sync


def carry_over(previous: Path, work: Path) -> list[str]:
    """Hard-link into the new build what later stages wrote into the previous one (the
    database it was loaded into, embeddings): everything the import itself does not write.
    Those files are only ever replaced, never written in place, so a link is a safe copy.
    Returns the names carried."""
    carried = []
    for entry in sorted(previous.iterdir()):
        if entry.name.startswith(".") or entry.name in IMPORT_FILES:
            continue
        if entry.is_dir():
            shutil.copytree(entry, work / entry.name, copy_function=_link)
        else:
            _link(entry, work / entry.name)
        carried.append(entry.name)
    return carried


def _link(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copy2(src, dst)
