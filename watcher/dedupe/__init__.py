"""Near-duplicate detection: matching text, shingles, signatures, an index, decisions.

    text   = matching_text(title, body)       Simplified, lower case, boilerplate rules removed
    hashes = features(text)                   char 5-grams (CJK) or word 3-grams (Latin), numpy
    sig    = Signer.sign(...)                 rensa MinHash digest + shingle count + numbers
                                              + a consistent 1-in-8 sample of the shingles
    keys   = index.query(sig)                 LSH bands (Jaccard) and sampled shingles
                                              (containment), over the articles held
    choice = decide(sig, candidates, ...)     best member by Jaccard or containment, unless
                                              their numbers disagree; else a new story

Why this shape (../shared/LIBRARIES.md): signatures are where the time goes. Rolling hashes
of code points in numpy (no Python loop per shingle) feed rensa's Rust MinHash in one call.
The index keeps its keys in sorted numpy arrays (1-2 KB per article, no Python object per
key), so it is rebuilt from stored signatures in seconds per 100k articles.

Normalization for matching (never for display): the text is converted Traditional ->
Simplified (OpenCC t2s) and lower-cased; the boilerplate rules (outlet datelines, copyright
and feed footers) are removed; then only letters and digits are kept, NFKC-normalized (the
costly ``unicodedata.normalize`` runs only when a kept character is not NFKC-stable).

The package, one module per step, each importing only those above it:

    text.py       matching text: OpenCC t2s, lower case, boilerplate rules
    shingles.py   shingle hashes, their distinct count, the numbers and the sample, in numpy
    signature.py  Signature, Signer (rensa), jaccard / containment / number_agreement
    index.py      LshIndex: band keys and sampled shingles in sorted numpy arrays
    decision.py   Member, Decision, score, decide: the rule, scored for all candidates at once
    book.py       StoryBook: the index and the members held; copies share one index entry

Does not: read or write the store, know about time windows beyond filtering the candidates it
is given, fetch anything, or decide what an alert is.
"""

from watcher.dedupe.book import StoryBook
from watcher.dedupe.decision import Decision, Member, decide, decide_among, is_within, score
from watcher.dedupe.index import (
    BANDS,
    CONTAINMENT_KEY_EVERY,
    ROWS,
    LshIndex,
    band_keys,
    index_keys,
)
from watcher.dedupe.shingles import (
    CHAR_SHINGLE,
    CJK_SHARE,
    SAMPLE_EVERY,
    U32,
    U64,
    WORD_SHINGLE,
    features,
    features_with_sample,
    shingle_hashes,
)
from watcher.dedupe.signature import (
    NUM_PERM,
    SAMPLE_MIN,
    SEED,
    Signature,
    Signed,
    Signer,
    containment,
    containments,
    jaccard,
    matching_input,
    number_agreement,
    sign_articles,
)
from watcher.dedupe.text import BUILTIN_BOILERPLATE, Boilerplate, matching_text, to_simplified

__all__ = [
    "BANDS",
    "BUILTIN_BOILERPLATE",
    "CHAR_SHINGLE",
    "CJK_SHARE",
    "CONTAINMENT_KEY_EVERY",
    "NUM_PERM",
    "ROWS",
    "SAMPLE_EVERY",
    "SAMPLE_MIN",
    "SEED",
    "U32",
    "U64",
    "WORD_SHINGLE",
    "Boilerplate",
    "Decision",
    "LshIndex",
    "Member",
    "Signature",
    "Signed",
    "Signer",
    "StoryBook",
    "band_keys",
    "containment",
    "containments",
    "decide",
    "decide_among",
    "features",
    "features_with_sample",
    "index_keys",
    "is_within",
    "jaccard",
    "matching_input",
    "matching_text",
    "number_agreement",
    "score",
    "shingle_hashes",
    "sign_articles",
    "to_simplified",
]
