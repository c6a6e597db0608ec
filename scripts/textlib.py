"""Text helpers shared by the data and evaluation scripts: word tokens, Okapi BM25, phrase
helpers and a checked JSONL reader."""
import collections
import json
import math
import re
import sys

# English function words, skipped when choosing keywords and candidate passages.
STOPWORDS = frozenset("""a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each every few for from
further had has have having he her here hers herself him himself his how i if in into is it its
itself just may me more most must my myself no nor not now of off on once one only or other our
ours ourselves out over own same shall she should so some such than that the their theirs them
themselves then there these they this those through to too under until up upon us very was we
were what when where which while who whom why will with would you your yours yourself yourselves""".split())

WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+")


def tokens(text):
    """Lower-cased word and number tokens."""
    return [w.lower() for w in WORD.findall(text)]


class BM25:
    """Okapi BM25 (k1 1.2, b 0.75, idf log(1 + (n - df + 0.5) / (df + 0.5))) over token lists."""

    def __init__(self, docs, k1=1.2, b=0.75):
        self.k1, self.b = k1, b
        self.tf = [collections.Counter(d) for d in docs]
        self.len = [len(d) for d in docs]
        self.avg = sum(self.len) / max(1, len(docs)) or 1.0
        df = collections.Counter()
        self.index = collections.defaultdict(list)
        for i, c in enumerate(self.tf):
            for w in c:
                df[w] += 1
                self.index[w].append(i)
        n = len(docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}

    def score(self, query_tokens, i):
        c, s = self.tf[i], 0.0
        for w in query_tokens:
            f = c.get(w, 0)
            if f:
                s += self.idf[w] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.len[i] / self.avg))
        return s

    def order(self, query_tokens):
        """Every document, best first (ties by index)."""
        return sorted(range(len(self.tf)), key=lambda i: (-self.score(query_tokens, i), i))

    def top(self, query_tokens, k, exclude=None, skip=()):
        """The k best documents sharing a non-`skip` token with the query, `exclude` left out."""
        cand = set()
        for w in set(query_tokens):
            if w not in skip:
                cand.update(self.index.get(w, ()))
        cand.discard(exclude)
        return sorted(cand, key=lambda i: (-self.score(query_tokens, i), i))[:k]


def contains(seq, sub):
    """True when the token list `sub` occurs in `seq` as a contiguous run."""
    n = len(sub)
    return any(seq[i:i + n] == sub for i in range(len(seq) - n + 1))


def perturb(phrase, rng):
    """A phrase query made harder: one word dropped, two neighbours swapped, all lower case."""
    phrase = list(phrase)
    phrase.pop(rng.randrange(len(phrase)))
    i = rng.randrange(len(phrase) - 1)
    phrase[i], phrase[i + 1] = phrase[i + 1], phrase[i]
    return [w.lower() for w in phrase]


def read_jsonl(path):
    """Every non-blank line of a JSONL file, parsed; exits naming file and line on bad JSON."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not JSON ({e})")
    return rows
