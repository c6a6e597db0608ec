#!/usr/bin/env python3
"""Converts the MMDocIR page-retrieval benchmark into ziprerank's batch JSONL (docs/FORMATS.md).

Inputs
  --annotations MMDocIR_annotations.jsonl   one line per document: doc_name, domain,
        page_indices [s, e] (inclusive rows of MMDocIR_pages.parquet), questions[{Q, A, page_id}]
  page images, one of:
    --parquet MMDocIR_pages.parquet   MMDocIR's own distribution of the page screenshots (row r
        holds the JPEG bytes in `image_binary`; a document's pages are rows s..e). Needs pyarrow
        (`pip install pyarrow`). The images of the pages that become candidates are written to
        --image-dir as {doc}/{page}.jpg, the layout the folder route reads.
    --pages-dir DIR   page images already extracted, one file per page, in either layout
        DIR/{doc}/{page}.{png,jpg,jpeg}   or   DIR/{doc}_{page}.{png,jpg,jpeg}
        where {doc} is the doc_name with or without its ".pdf" suffix and {page} is the page
        number counted from --pages-base (default 0, MMDocIR's numbering; use 1 for files
        numbered from 1 as pdftoppm writes them). The JSONL refers to the files where they are.
  --first-stage PICKLE (optional)   the reference evaluation's first-stage retrieval pickle: a
        dict keyed "{doc_name}_{q_idx}" whose values hold top_k_local_indices and top_k_scores
        (the DSE top 20, best first). Its pages become the candidates, in that order, with
        `first_stage_score`. Without it every page of the question's document is a candidate
        (`ziprerank batch` ranks long lists with its sliding window). Pickles can run code when
        loaded: only pass one you trust. If it holds numpy arrays, numpy must be installed.

Output: one line per question
  {"query_id": "{doc_name}_{q_idx}", "query": Q, "candidates": [{"id": "{doc_name}#{page}",
   "image": PATH}, ...], "relevant": ["{doc_name}#{page}", ...], "domain": ..., "doc_name": ...,
   "q_idx": ...}
  q_idx is the question's 0-based position in its document's `questions` list. {page} is
  MMDocIR's page_id: 0-based and local to the document (row s + page of the parquet), so
  `relevant` is the question's page_id list written as ids, and first-stage indices map to the
  same ids. (A `page` field of a PDF candidate in FORMATS.md is 1-based; these candidates are
  images and carry no `page` field.) Image paths are relative to the output file's folder.

Selection: --limit N keeps the first N documents of the annotations file; --sample N then draws N
questions with random.seed(SEED) and random.sample over the question keys in file order (the
first-stage pickle's key order when given), as the reference evaluation does (its default is 100;
0 = all). Sampled questions are written in the order random.sample returns them.

Exit status: 0 on success, 2 for bad arguments, 3 for bad or missing input, 1 when pyarrow or
numpy is needed but not installed.
"""

import argparse
import json
import os
import pickle
import random
import sys

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class InputProblem(Exception):
    """Bad or missing input: reported on one line, exit status 3."""


class MissingDependency(Exception):
    """An optional module this route needs is not installed: exit status 1."""


def read_annotations(path):
    docs = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as e:
        raise InputProblem(f"cannot open '{path}': {e.strerror}")
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputProblem(f"{where}: invalid JSON ({e.msg} at column {e.colno})")
            for key in ("doc_name", "domain", "page_indices", "questions"):
                if key not in doc:
                    raise InputProblem(f"{where}: missing \"{key}\"")
            start, end = doc["page_indices"]
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
                raise InputProblem(f"{where}: page_indices must be [start, end] rows, start <= end")
            for q_idx, q in enumerate(doc["questions"]):
                if "Q" not in q or "page_id" not in q:
                    raise InputProblem(f"{where}: question {q_idx} lacks \"Q\" or \"page_id\"")
                for page in q["page_id"]:
                    if not isinstance(page, int) or not 0 <= page <= end - start:
                        raise InputProblem(
                            f"{where}: question {q_idx} has page_id {page!r}, outside the "
                            f"document's {end - start + 1} pages (0-based)")
            doc["_line"] = number
            docs.append(doc)
    return docs


def load_first_stage(path):
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except OSError as e:
        raise InputProblem(f"cannot open '{path}': {e.strerror}")
    except ModuleNotFoundError as e:
        raise MissingDependency(
            f"the first-stage pickle '{path}' needs the Python module '{e.name}' to load "
            f"(pip install {e.name})")
    except (pickle.UnpicklingError, EOFError) as e:
        raise InputProblem(f"'{path}' is not a readable pickle ({e})")
    if not isinstance(data, dict):
        raise InputProblem(f"'{path}': expected a dict keyed \"{{doc_name}}_{{q_idx}}\"")
    return data


def doc_folder_name(doc_name):
    # Written image folders drop ".pdf" and never contain a path separator.
    stem = doc_name[:-4] if doc_name.lower().endswith(".pdf") else doc_name
    return stem.replace("/", "_").replace(os.sep, "_")


def find_page_image(pages_dir, doc_name, page, base):
    number = str(page + base)
    names = [doc_name]
    if doc_name.lower().endswith(".pdf"):
        names.append(doc_name[:-4])
    tried = []
    for name in names:
        for ext in IMAGE_EXTENSIONS:
            for candidate in (os.path.join(pages_dir, name, number + ext),
                              os.path.join(pages_dir, f"{name}_{number}{ext}")):
                if os.path.isfile(candidate):
                    return candidate
                tried.append(candidate)
    raise InputProblem(
        f"no image for page {page} of '{doc_name}' in '{pages_dir}' (looked for e.g. "
        f"{tried[0]} and {tried[1]}; pages are numbered from --pages-base {base})")


def build_questions(docs, first_stage):
    """Returns [(key, doc, q_idx, question, candidate_pages, first_stage_scores or None)]."""
    by_key = {}
    order = []
    for doc in docs:
        for q_idx, q in enumerate(doc["questions"]):
            key = f"{doc['doc_name']}_{q_idx}"
            if key in by_key:
                raise InputProblem(f"question key '{key}' occurs twice in the annotations")
            by_key[key] = (doc, q_idx, q)
            order.append(key)
    if first_stage is None:
        out = []
        for key in order:
            doc, q_idx, q = by_key[key]
            start, end = doc["page_indices"]
            out.append((key, doc, q_idx, q, list(range(end - start + 1)), None))
        return out
    # The pickle decides which questions exist and their order; documents dropped by --limit
    # are skipped.
    known_docs = {doc["doc_name"] for doc in docs}
    out = []
    for key, entry in first_stage.items():
        if key not in by_key:
            if isinstance(entry, dict) and entry.get("doc_name") in known_docs:
                raise InputProblem(f"first-stage key '{key}' is not a question of the annotations")
            continue
        doc, q_idx, q = by_key[key]
        try:
            pages = [int(p) for p in entry["top_k_local_indices"]]
            scores = [float(s) for s in entry.get("top_k_scores", [])]
        except (KeyError, TypeError, ValueError) as e:
            raise InputProblem(f"first-stage entry '{key}' lacks usable top_k_local_indices ({e})")
        n_pages = doc["page_indices"][1] - doc["page_indices"][0] + 1
        bad = [p for p in pages if not 0 <= p < n_pages]
        if bad:
            raise InputProblem(f"first-stage entry '{key}' has pages {bad} outside the "
                               f"document's {n_pages} pages")
        if scores and len(scores) != len(pages):
            raise InputProblem(f"first-stage entry '{key}': {len(pages)} pages but "
                               f"{len(scores)} scores")
        out.append((key, doc, q_idx, q, pages, scores or None))
    return out


def export_parquet_images(parquet, needed, image_dir):
    """Writes the JPEG of every needed (doc_name, page) to image_dir/{doc}/{page}.jpg.

    `needed` maps a global parquet row to (doc_name, page). Rows are streamed in batches so the
    20k-page file never sits in memory at once. Returns {(doc_name, page): path}."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency(
            "reading MMDocIR_pages.parquet needs pyarrow: pip install pyarrow, or extract the "
            "page images once and pass --pages-dir instead of --parquet")
    try:
        reader = pq.ParquetFile(parquet)
    except OSError as e:
        raise InputProblem(f"cannot read parquet '{parquet}': {e}")
    columns = [c for c in ("doc_name", "image_binary") if c in reader.schema_arrow.names]
    if "image_binary" not in columns:
        raise InputProblem(f"'{parquet}' has no image_binary column")
    written = {}
    row = 0
    for batch in reader.iter_batches(batch_size=64, columns=columns):
        table = batch.to_pydict()
        images = table["image_binary"]
        names = table.get("doc_name")
        for i, data in enumerate(images):
            target = needed.get(row + i)
            if target is None:
                continue
            doc_name, page = target
            # A mismatch means the annotations and the parquet come from different releases.
            if names is not None and names[i] != doc_name:
                raise InputProblem(
                    f"parquet row {row + i} belongs to '{names[i]}', but the annotations put "
                    f"page {page} of '{doc_name}' there")
            if isinstance(data, dict):  # a Hugging Face Image struct {bytes, path}
                data = data.get("bytes")
            if not data:
                raise InputProblem(f"parquet row {row + i} has no image bytes")
            folder = os.path.join(image_dir, doc_folder_name(doc_name))
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{page}.jpg")
            with open(path, "wb") as handle:
                handle.write(data)
            written[(doc_name, page)] = path
        row += len(images)
    missing = [needed[r] for r in needed if needed[r] not in written]
    if missing:
        raise InputProblem(f"'{parquet}' has {row} rows; {len(missing)} needed pages are beyond "
                           f"it (e.g. page {missing[0][1]} of '{missing[0][0]}')")
    return written


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the top of this script for the accepted layouts and the numbering.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True, help="MMDocIR_annotations.jsonl")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--parquet", help="MMDocIR_pages.parquet (needs pyarrow)")
    source.add_argument("--pages-dir", help="folder of extracted page images")
    parser.add_argument("--pages-base", type=int, choices=(0, 1), default=0,
                        help="number of the first page in --pages-dir file names (default 0)")
    parser.add_argument("--first-stage", help="first-stage retrieval pickle (top-20 candidates)")
    parser.add_argument("--output", "-o", required=True, help="batch JSONL to write")
    parser.add_argument("--image-dir",
                        help="where --parquet writes page images (default: pages/ beside --output)")
    parser.add_argument("--limit", type=int, default=0,
                        help="convert only the first N documents (0 = all)")
    parser.add_argument("--sample", type=int, default=0,
                        help="draw N questions as the reference evaluation does (0 = all)")
    parser.add_argument("--seed", type=int, default=42, help="seed for --sample (default 42)")
    args = parser.parse_args(argv)
    if args.limit < 0 or args.sample < 0:
        parser.error("--limit and --sample must be >= 0")
    return args


def convert(args):
    docs = read_annotations(args.annotations)
    if args.limit:
        docs = docs[:args.limit]
    first_stage = load_first_stage(args.first_stage) if args.first_stage else None
    questions = build_questions(docs, first_stage)
    if args.sample > len(questions):
        print(f"mmdocir_to_jsonl: --sample {args.sample} exceeds the {len(questions)} questions; "
              f"taking them all", file=sys.stderr)
    elif args.sample:
        random.seed(args.seed)
        keys = random.sample([item[0] for item in questions], args.sample)
        by_key = {item[0]: item for item in questions}
        questions = [by_key[k] for k in keys]

    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)

    images = {}
    if args.parquet:
        image_dir = args.image_dir or os.path.join(out_dir, "pages")
        needed = {}
        for _, doc, _, _, pages, _ in questions:
            for page in pages:
                needed[doc["page_indices"][0] + page] = (doc["doc_name"], page)
        images = export_parquet_images(args.parquet, needed, image_dir)
    else:
        if not os.path.isdir(args.pages_dir):
            raise InputProblem(f"--pages-dir '{args.pages_dir}' is not a folder")
        for _, doc, _, _, pages, _ in questions:
            for page in pages:
                key = (doc["doc_name"], page)
                if key not in images:
                    images[key] = find_page_image(args.pages_dir, doc["doc_name"], page,
                                                  args.pages_base)

    n_candidates = 0
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        for key, doc, q_idx, q, pages, scores in questions:
            name = doc["doc_name"]
            candidates = []
            for i, page in enumerate(pages):
                image = os.path.relpath(images[(name, page)], out_dir).replace(os.sep, "/")
                candidate = {"id": f"{name}#{page}", "image": image}
                if scores is not None:
                    candidate["first_stage_score"] = scores[i]
                candidates.append(candidate)
            n_candidates += len(candidates)
            record = {
                "query_id": key,
                "query": q["Q"],
                "candidates": candidates,
                "relevant": [f"{name}#{p}" for p in q["page_id"]],
                "domain": doc["domain"],
                "doc_name": name,
                "q_idx": q_idx,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    # Written under a temporary name first so a failed run never leaves a half file behind.
    os.replace(tmp, args.output)
    print(f"mmdocir_to_jsonl: wrote {len(questions)} queries ({n_candidates} candidates, "
          f"{len(images)} page images) from {len(docs)} documents to {args.output}",
          file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    try:
        convert(args)
    except InputProblem as e:
        print(f"mmdocir_to_jsonl: error: {e}", file=sys.stderr)
        return 3
    except MissingDependency as e:
        print(f"mmdocir_to_jsonl: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
