#!/usr/bin/env python3
"""An evaluation set of real PDF documents typeset by another tool (GNU troff), for checking the
small model on pages it has never seen, laid out by software it was never trained on.

Documents: the held-out documents of scripts/make_stage2_data.py (their doc.json: title, author,
sections with headings, paragraphs, bulleted lists and term tables), written as groff `ms` source
and typeset by `groff -t -ms -Tpdf` in a look drawn from the seed: Times, Helvetica, Palatino,
Bookman or New Century Schoolbook; 10-12 pt; one or two columns; numbered or plain headings;
Letter or A4. groff chooses its own line breaks, hyphenation and page breaks, so nothing about
the pages comes from ziprerank's renderer. The PDFs are rendered by `ziprerank` itself (poppler)
when ranked, as a user's PDF would be.

Queries (true page text from `pdftotext` per page):
  heading: a section heading -> the page where it is printed;
  phrase / perturbed: 4-8 consecutive words found on exactly one page -> that page (perturbed:
           one word dropped, two swapped, lower case).
Candidates: the document's pages in BM25 order over the true page text, cut to --candidates with
the relevant page kept, as a first stage would give.

Output folder:
  docs/<doc>.pdf, docs/<doc>.ms          the typeset documents and their groff source
  queries.jsonl   {"query_id", "query", "candidates": [{"id", "pdf", "page"}], "relevant", "kind"}
                  (`ziprerank batch` input and `ziprerank eval` qrels)
  bm25_run.jsonl, random_run.jsonl       baseline runs (BM25 over the true page text; random)
  stats.json
  volumes/                               with --volume-pages N: the same documents bound in order
                                         into PDFs of at least N pages and the same queries, each
                                         with --candidates pages of its volume (same files)

Needs the Debian packages groff (not just groff-base: the pdf device), ghostscript's fonts and
poppler-utils (pdftotext, pdfinfo).
Usage: scripts/make_pdf_eval.py --stage2 .cache/small-model/stage2-data --out .cache/pdf-eval [--seed 11]
       [--volume-pages 24]
"""
import argparse
import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textlib import BM25, STOPWORDS, contains, perturb, tokens  # noqa: E402

FAMILIES = {"T": "Times", "H": "Helvetica", "P": "Palatino", "B": "Bookman", "N": "New Century Schoolbook"}


def esc(text):
    """Text safe for a troff input line: backslashes escaped, no control character at the start."""
    text = text.replace("\\", "\\e").replace("\n", " ")
    return "\\&" + text if text[:1] in ".'" else text


def to_ms(doc, style):
    out = [f".fam {style['family']}", f".nr PS {style['size']}", f".nr VS {style['size'] + 2}",
           ".nr HM 0.8i", ".nr FM 0.8i", ".nr PO 1i" if style["paper"] == "letter" else ".nr PO 2.5c",
           ".nr LL 6.5i" if style["paper"] == "letter" else ".nr LL 16c",
           f".ds LH {esc(doc.get('header') or doc['title'])}", ".ds CH", ".ds RH", ".ds CF - % -",
           ".TL", esc(doc["title"])]
    if doc.get("author"):
        out += [".AU", esc(doc["author"])]
    if doc.get("subtitle"):
        out += [".AI", esc(doc["subtitle"])]
    if style["columns"] == 2:
        out.append(".2C")
    for sec in doc["sections"]:
        out += [".NH" if style["numbered"] else ".SH", esc(sec["heading"])]
        for block in sec["blocks"]:
            if isinstance(block, str):
                out += [".PP", esc(block)]
            elif block.get("type") == "table":
                out += [".KS", ".TS", "center box tab(\t);", "c" * len(block["header"]) + ".",
                        "\t".join(esc(h) for h in block["header"]), "_"]
                out.append("l" + "r" * (len(block["header"]) - 1) + ".")
                out += ["\t".join(esc(c) for c in row) for row in block["rows"]]
                out += [".TE", ".KE"]
                if block.get("caption"):
                    out += [".QP", esc(block["caption"])]
            elif "items" in block:
                for item in block["items"]:
                    out += [".IP \\(bu 2", esc(item)]
    return "\n".join(out) + "\n"


def page_texts(pdf):
    info = subprocess.run(["pdfinfo", pdf], check=True, capture_output=True, text=True).stdout
    n = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    return [subprocess.run(["pdftotext", "-f", str(p), "-l", str(p), pdf, "-"], check=True,
                           capture_output=True, text=True).stdout for p in range(1, n + 1)]


def make_queries(doc, pages, rng, n_heading, n_phrase):
    toks = [tokens(t) for t in pages]
    out = []
    headings = [s["heading"] for s in doc["sections"]]
    rng.shuffle(headings)
    for h in headings:
        if len(out) >= n_heading:
            break
        ht = tokens(h)
        # The page printing the heading (pdftotext keeps words in reading order; a heading split
        # over a line break still reads as consecutive words).
        hits = [p for p in range(len(pages)) if ht and contains(toks[p], ht)]
        if hits:
            out.append(("heading", h, hits[0], ht))
    tries = 0
    while sum(q[0] != "heading" for q in out) < n_phrase and tries < 200:
        tries += 1
        p = rng.randrange(len(pages))
        words = [w for w in re.split(r"\s+", pages[p]) if re.search(r"[A-Za-z]", w)]
        n = rng.randint(4, 8)
        if len(words) < n + 20:
            continue
        start = rng.randrange(len(words) - n)
        phrase = [re.sub(r"[^\w'-]", "", w) for w in words[start:start + n]]
        phrase = [w for w in phrase if w and not w.endswith("-")]
        pt = tokens(" ".join(phrase))
        if len(pt) < 4 or sum(t not in STOPWORDS for t in pt) < 2:
            continue
        if [q for q in range(len(pages)) if contains(toks[q], pt)] != [p]:
            continue
        kind = "phrase"
        if rng.random() < 0.3:
            phrase = perturb(phrase, rng)
            kind = "perturbed"
        out.append((kind, " ".join(phrase), p, pt))
    return out, toks


def first_stage(bm25, query, page, n):
    """The candidates a first stage gives: BM25's best n pages for the query, the right page kept
    (in the last place when BM25 ranks it lower)."""
    keep = bm25.order(tokens(query))[:n]
    if page not in keep:
        keep[-1] = page
    return keep


def run_line(query_id, order, cid):
    """One line of a run file ranking the pages `order` in that order."""
    return json.dumps({"query_id": query_id, "ranking": [
        {"id": cid(p), "score": float(len(order) - r)} for r, p in enumerate(order)]}) + "\n"


def write_volumes(docs, args, out):
    """The same documents and queries, bound in order into volumes of at least --volume-pages pages
    (pdfunite), so that a query has --candidates pages of one long PDF to choose from: the pages
    of its own document and of the documents bound with it. A query whose words (the heading, or
    the phrase before any perturbation) are also found on a page of another document in its
    volume is left out, since its answer would be ambiguous."""
    os.makedirs(os.path.join(out, "docs"), exist_ok=True)
    groups, cur = [], []
    for d in docs:
        cur.append(d)
        if sum(len(x["toks"]) for x in cur) >= args.volume_pages:
            groups.append(cur)
            cur = []
    if cur:  # the remainder joins the last volume, so every volume is long enough
        if groups:
            groups[-1].extend(cur)
        else:
            groups.append(cur)
    rng = random.Random(args.seed + 1)
    stats = collections.Counter()
    files = {n: open(os.path.join(out, n), "w", encoding="utf-8")
             for n in ("queries.jsonl", "bm25_run.jsonl", "random_run.jsonl")}
    for vi, group in enumerate(groups):
        name = f"volume{vi + 1:02d}"
        pdf = os.path.join(out, "docs", name + ".pdf")
        subprocess.run(["pdfunite"] + [d["pdf"] for d in group] + [pdf], check=True)
        toks, offset = [], {}
        for d in group:
            offset[d["doc_id"]] = len(toks)
            toks.extend(d["toks"])
        bm25 = BM25(toks)
        stats["volumes"] += 1
        stats["pages"] += len(toks)
        cid = lambda p: f"{name}.pdf#{p + 1}"  # noqa: E731
        for d in group:
            base = offset[d["doc_id"]]
            own = range(base, base + len(d["toks"]))
            for qi, (kind, query, page, key) in enumerate(d["queries"]):
                if any(p not in own and contains(toks[p], key) for p in range(len(toks))):
                    stats["queries_left_out_ambiguous"] += 1
                    continue
                page += base
                keep = first_stage(bm25, query, page, args.candidates)
                row = {"query_id": f"{d['doc_id']}/q{qi:02d}", "query": query, "kind": kind,
                       "candidates": [{"id": cid(p), "pdf": os.path.relpath(pdf, out), "page": p + 1}
                                      for p in keep],
                       "relevant": [cid(page)]}
                files["queries.jsonl"].write(json.dumps(row) + "\n")
                shuffled = list(keep)
                rng.shuffle(shuffled)
                files["bm25_run.jsonl"].write(run_line(row["query_id"], keep, cid))
                files["random_run.jsonl"].write(run_line(row["query_id"], shuffled, cid))
                stats["queries"] += 1
                stats["candidates"] += len(keep)
        print(f"{name}: {len(group)} documents, {len(toks)} pages", file=sys.stderr)
    for f in files.values():
        f.close()
    json.dump(dict(sorted(stats.items())), open(os.path.join(out, "stats.json"), "w"), indent=2)
    print("volumes: " + json.dumps(dict(sorted(stats.items()))), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage2", required=True, help="output folder of scripts/make_stage2_data.py")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--heading-queries", type=int, default=4)
    ap.add_argument("--phrase-queries", type=int, default=6)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--volume-pages", type=int, default=0,
                    help="also bind the documents into volumes of at least this many pages (see above)")
    args = ap.parse_args()
    for tool in ("groff", "pdftotext", "pdfinfo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install groff ghostscript poppler-utils")
    rng = random.Random(args.seed)
    held = []
    with open(os.path.join(args.stage2, "eval.jsonl"), encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)["query_id"].rsplit("/", 1)[0]
            if doc not in held:
                held.append(doc)
    docs_dir = os.path.join(args.out, "docs")
    os.makedirs(docs_dir, exist_ok=True)
    stats = collections.Counter()
    kept = []
    queries = open(os.path.join(args.out, "queries.jsonl"), "w", encoding="utf-8")
    bm25_run = open(os.path.join(args.out, "bm25_run.jsonl"), "w", encoding="utf-8")
    random_run = open(os.path.join(args.out, "random_run.jsonl"), "w", encoding="utf-8")
    for doc_id in held:
        doc = json.load(open(os.path.join(args.stage2, "pages", doc_id, "doc.json"), encoding="utf-8"))
        style = {"family": rng.choice(sorted(FAMILIES)), "size": rng.choice([10, 11, 12]),
                 "columns": rng.choice([1, 1, 2]), "numbered": rng.random() < 0.5,
                 "paper": rng.choice(["letter", "a4"])}
        src = os.path.join(docs_dir, doc_id + ".ms")
        pdf = os.path.join(docs_dir, doc_id + ".pdf")
        with open(src, "w", encoding="utf-8") as f:
            f.write(to_ms(doc, style))
        with open(pdf, "wb") as f:
            subprocess.run(["groff", "-t", "-ms", "-Tpdf", "-K", "utf8", f"-dpaper={style['paper']}",
                            f"-P-p{style['paper']}", src], check=True, stdout=f)
        pages = page_texts(pdf)
        qs, toks = make_queries(doc, pages, rng, args.heading_queries, args.phrase_queries)
        bm25 = BM25(toks)
        stats["documents"] += 1
        stats["pages"] += len(pages)
        stats[f"family_{FAMILIES[style['family']]}"] += 1
        kept.append({"doc_id": doc_id, "pdf": pdf, "toks": toks, "queries": qs})
        for qi, (kind, query, page, _) in enumerate(qs):
            keep = first_stage(bm25, query, page, args.candidates)
            rel = os.path.relpath(pdf, args.out)
            cid = lambda p: f"{doc_id}.pdf#{p + 1}"  # noqa: E731
            row = {"query_id": f"{doc_id}/q{qi:02d}", "query": query, "kind": kind,
                   "candidates": [{"id": cid(p), "pdf": rel, "page": p + 1} for p in keep],
                   "relevant": [cid(page)]}
            queries.write(json.dumps(row) + "\n")
            bm25_run.write(run_line(row["query_id"], keep, cid))
            shuffled = list(keep)
            rng.shuffle(shuffled)
            random_run.write(run_line(row["query_id"], shuffled, cid))
            stats["queries"] += 1
            stats[f"queries_{kind}"] += 1
            stats["candidates"] += len(keep)
        print(f"{doc_id}: {len(pages)} pages, {len(qs)} queries ({FAMILIES[style['family']]} "
              f"{style['size']} pt, {style['columns']} column(s))", file=sys.stderr)
    for f in (queries, bm25_run, random_run):
        f.close()
    json.dump(dict(sorted(stats.items())), open(os.path.join(args.out, "stats.json"), "w"), indent=2)
    print(json.dumps(dict(sorted(stats.items()))), file=sys.stderr)
    if args.volume_pages > 0:
        write_volumes(kept, args, os.path.join(args.out, "volumes"))


if __name__ == "__main__":
    main()
