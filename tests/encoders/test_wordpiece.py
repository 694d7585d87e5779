import json
import os
import subprocess
import sys

from encoders.text import load_tokenizer

# learn_vocab alone, loaded by path (no package imports): the process is cheap to start
LEARN = """
import importlib.util, json, sys
from collections import Counter
spec = importlib.util.spec_from_file_location("wordpiece", sys.argv[1])
wordpiece = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wordpiece)
counts = Counter(json.loads(open(sys.argv[2]).read()))
print(json.dumps(wordpiece.learn_vocab(counts, 600, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])))
"""


def test_same_texts_same_vocabulary_in_any_process(slice_index, slice_build, tmp_path):
    """Python's string hashing differs per process; the vocabulary must not."""
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    import encoders.wordpiece as wordpiece
    from k3m.data import tokenizer_corpus

    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter()
    for text in tokenizer_corpus(slice_index, slice_build.item_indices("train")):
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    (tmp_path / "counts.json").write_text(json.dumps(counts))
    vocabs = []
    for seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", LEARN, wordpiece.__file__, str(tmp_path / "counts.json")],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed},
        )
        vocabs.append(json.loads(proc.stdout))
    assert vocabs[0] == vocabs[1] and len(vocabs[0]) == 600


def test_trained_tokenizer_reads_the_catalog(fashion_slice_build, slice_index, slice_build, tmp_path):
    from encoders.text import train_wordpiece_tokenizer
    from k3m.data import tokenizer_corpus

    train_wordpiece_tokenizer(tokenizer_corpus(slice_index, slice_build.item_indices("train")), 2000, tmp_path)
    tok = load_tokenizer(tmp_path)  # as saved
    rows = slice_build.item_indices("train")[:200]
    ids = tok([slice_index.titles[r] for r in rows])["input_ids"]
    assert all(seq[0] == tok.cls_token_id and seq[-1] == tok.sep_token_id for seq in ids)
    assert sum(seq.count(tok.unk_token_id) for seq in ids) == 0  # every character is in the alphabet
    # frequent words are single tokens; merges continue words with ##
    assert tok.tokenize("Men Navy Blue Shirt") == ["men", "navy", "blue", "shirt"]
    assert any(t.startswith("##") and len(t) > 3 for t in tok.get_vocab())
