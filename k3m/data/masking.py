"""Pretraining targets drawn per item: MLM on title / knowledge-value tokens, MOM on visual
tokens. Every draw uses a generator keyed by (seed, epoch, build row, stream), so a batch's
masks do not depend on worker count, batch composition or what ran before (resume-exact)."""
from __future__ import annotations

import numpy as np

IGNORE = -100
# independent random streams per item (STREAM_NEGATIVES seeds a whole batch's negatives)
STREAM_PAIRS, STREAM_TITLE, STREAM_KNOWLEDGE, STREAM_MOM, STREAM_NEGATIVES = 0, 1, 2, 3, 4
# frozen encoders: whole-modality hiding/swapping, pair masking
STREAM_TITLE_SWAP, STREAM_IMAGE_SWAP, STREAM_PAIR_MASK, STREAM_JOINT_SWAP = 5, 6, 7, 8


def item_rng(seed: int, epoch: int, row: int, stream: int) -> np.random.Generator:
    """Philox keyed directly by (seed, stream) and (epoch, row): ~10x cheaper to create than
    a SeedSequence-seeded generator, and one is made per item and stream."""
    return np.random.Generator(np.random.Philox(key=[(seed << 4) | stream, (epoch << 40) | row]))


def mlm_mask(
    ids: np.ndarray,
    candidates: np.ndarray,
    rng: np.random.Generator,
    prob: float,
    mask_token_frac: float,
    random_token_frac: float,
    mask_id: int,
    random_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of ``ids`` at ``candidates`` (bool): each candidate is a target with
    probability ``prob`` (at least one target when there is any candidate, so every present
    sequence contributes); a target becomes [MASK] (80%), a random normal token (10%) or is
    kept (10%). Returns (masked ids, labels with -100 off target)."""
    ids = ids.copy()
    labels = np.full_like(ids, IGNORE)
    chosen = candidates & (rng.random(ids.shape) < prob)
    if not chosen.any() and candidates.any():
        chosen[rng.choice(np.flatnonzero(candidates))] = True
    labels[chosen] = ids[chosen]
    action = rng.random(ids.shape)
    ids[chosen & (action < mask_token_frac)] = mask_id
    swap = chosen & (action >= mask_token_frac) & (action < mask_token_frac + random_token_frac)
    ids[swap] = random_ids[rng.integers(0, len(random_ids), int(swap.sum()))]
    return ids, labels


def mom_mask(num_tokens: int, rng: np.random.Generator, prob: float) -> np.ndarray:
    """Exactly ``max(1, round(prob * num_tokens))`` masked visual tokens (never zero)."""
    mask = np.zeros(num_tokens, dtype=bool)
    mask[rng.choice(num_tokens, max(1, round(prob * num_tokens)), replace=False)] = True
    return mask
