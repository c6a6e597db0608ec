"""Tests of scripts/mmdocir_to_jsonl.py, run as a user would (a subprocess per conversion).

Run from the repository root: python3 -m unittest discover -s tests/scripts
"""

import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "mmdocir_to_jsonl.py")
# The real annotations live beside the repository, never inside it.
SHARED_ANNOTATIONS = os.path.join(os.path.dirname(REPO), "shared", "data", "mmdocir",
                                  "MMDocIR_annotations.jsonl")


def png_bytes(width=2, height=2, rgb=(200, 30, 30)):
    """A minimal valid 8-bit RGB PNG."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


TINY_DOCS = [
    {"doc_name": "alpha.pdf", "domain": "Laws", "page_indices": [0, 2], "layout_indices": [0, 5],
     "questions": [
         {"Q": "first?", "A": "x", "page_id": [1], "type": "['Text']", "layout_mapping": []},
         {"Q": "second?", "A": "y", "page_id": [0, 2], "type": "['Table']",
          "layout_mapping": []}]},
    {"doc_name": "beta.pdf", "domain": "News", "page_indices": [3, 4], "layout_indices": [6, 7],
     "questions": [
         {"Q": "third – ü?", "A": "z", "page_id": [1], "type": "['Chart']",
          "layout_mapping": []}]},
]


class Converter(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="zr_mmdocir_")
        self.annotations = os.path.join(self.tmp, "MMDocIR_annotations.jsonl")
        with open(self.annotations, "w", encoding="utf-8") as handle:
            for doc in TINY_DOCS:
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
        self.pages = os.path.join(self.tmp, "pages")
        self.png = png_bytes()
        # alpha uses the {doc}/{page} layout with the full doc_name, beta the flat
        # {doc}_{page} layout with the ".pdf" dropped.
        for page in range(3):
            write_file(os.path.join(self.pages, "alpha.pdf", f"{page}.png"), self.png)
        for page in range(2):
            write_file(os.path.join(self.pages, f"beta_{page}.jpg"), self.png)
        self.output = os.path.join(self.tmp, "out", "batch.jsonl")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_script(self, *args):
        return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)

    def convert(self, *extra):
        r = self.run_script("--annotations", self.annotations, "--output", self.output, *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.output, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    def test_folder_route_writes_exact_records(self):
        records = self.convert("--pages-dir", self.pages)
        alpha = [{"id": f"alpha.pdf#{p}", "image": f"../pages/alpha.pdf/{p}.png"}
                 for p in range(3)]
        beta = [{"id": f"beta.pdf#{p}", "image": f"../pages/beta_{p}.jpg"} for p in range(2)]
        self.assertEqual(records, [
            {"query_id": "alpha.pdf_0", "query": "first?", "candidates": alpha,
             "relevant": ["alpha.pdf#1"], "domain": "Laws", "doc_name": "alpha.pdf", "q_idx": 0},
            {"query_id": "alpha.pdf_1", "query": "second?", "candidates": alpha,
             "relevant": ["alpha.pdf#0", "alpha.pdf#2"], "domain": "Laws",
             "doc_name": "alpha.pdf", "q_idx": 1},
            {"query_id": "beta.pdf_0", "query": "third – ü?", "candidates": beta,
             "relevant": ["beta.pdf#1"], "domain": "News", "doc_name": "beta.pdf", "q_idx": 0},
        ])
        # Every image path resolves from the output file's folder.
        for record in records:
            for c in record["candidates"]:
                self.assertTrue(os.path.isfile(os.path.join(os.path.dirname(self.output),
                                                            c["image"])), c)

    def test_pages_numbered_from_one(self):
        shutil.rmtree(self.pages)
        for page in range(1, 4):
            write_file(os.path.join(self.pages, "alpha", f"{page}.png"), self.png)
        records = self.convert("--pages-dir", self.pages, "--pages-base", "1", "--limit", "1")
        self.assertEqual(len(records), 2)
        # The id keeps MMDocIR's 0-based page; only the file name is shifted.
        self.assertEqual(records[0]["candidates"][0],
                         {"id": "alpha.pdf#0", "image": "../pages/alpha/1.png"})

    def test_limit_and_sample(self):
        records = self.convert("--pages-dir", self.pages, "--limit", "1")
        self.assertEqual([r["query_id"] for r in records], ["alpha.pdf_0", "alpha.pdf_1"])

        records = self.convert("--pages-dir", self.pages, "--sample", "2", "--seed", "42")
        random.seed(42)
        expected = random.sample(["alpha.pdf_0", "alpha.pdf_1", "beta.pdf_0"], 2)
        self.assertEqual([r["query_id"] for r in records], expected)

    def test_first_stage_candidates(self):
        first_stage = {
            "alpha.pdf_0": {"doc_name": "alpha.pdf", "q_idx": 0, "top_k_local_indices": [2, 1],
                            "top_k_scores": [0.9, 0.5]},
            "alpha.pdf_1": {"doc_name": "alpha.pdf", "q_idx": 1, "top_k_local_indices": [0],
                            "top_k_scores": [0.7]},
            "beta.pdf_0": {"doc_name": "beta.pdf", "q_idx": 0, "top_k_local_indices": [1, 0],
                           "top_k_scores": [0.3, 0.2]},
        }
        pickle_path = os.path.join(self.tmp, "first_stage.pkl")
        with open(pickle_path, "wb") as handle:
            pickle.dump(first_stage, handle)
        records = self.convert("--pages-dir", self.pages, "--first-stage", pickle_path,
                               "--limit", "1")
        self.assertEqual([r["query_id"] for r in records], ["alpha.pdf_0", "alpha.pdf_1"])
        self.assertEqual(records[0]["candidates"], [
            {"id": "alpha.pdf#2", "image": "../pages/alpha.pdf/2.png", "first_stage_score": 0.9},
            {"id": "alpha.pdf#1", "image": "../pages/alpha.pdf/1.png", "first_stage_score": 0.5},
        ])
        self.assertEqual(records[1]["relevant"], ["alpha.pdf#0", "alpha.pdf#2"])

        first_stage["alpha.pdf_0"]["top_k_local_indices"] = [7]
        with open(pickle_path, "wb") as handle:
            pickle.dump(first_stage, handle)
        r = self.run_script("--annotations", self.annotations, "--output", self.output,
                            "--pages-dir", self.pages, "--first-stage", pickle_path)
        self.assertEqual(r.returncode, 3)
        self.assertIn("alpha.pdf_0", r.stderr)

    def test_missing_image_and_bad_annotations(self):
        os.remove(os.path.join(self.pages, "beta_1.jpg"))
        r = self.run_script("--annotations", self.annotations, "--output", self.output,
                            "--pages-dir", self.pages)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("page 1 of 'beta.pdf'", r.stderr)
        self.assertFalse(os.path.exists(self.output))

        with open(self.annotations, "a", encoding="utf-8") as handle:
            handle.write("{not json\n")
        r = self.run_script("--annotations", self.annotations, "--output", self.output,
                            "--pages-dir", self.pages)
        self.assertEqual(r.returncode, 3)
        self.assertIn("MMDocIR_annotations.jsonl:3", r.stderr)

        r = self.run_script("--annotations", self.annotations, "--output", self.output)
        self.assertEqual(r.returncode, 2)  # neither --parquet nor --pages-dir
        r = self.run_script("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--pages-dir", r.stdout)

    def test_parquet_route(self):
        try:
            import pyarrow
            import pyarrow.parquet as pq
        except ImportError:
            r = self.run_script("--annotations", self.annotations, "--output", self.output,
                                "--parquet", os.path.join(self.tmp, "MMDocIR_pages.parquet"))
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("pip install pyarrow", r.stderr)
            self.assertIn("--pages-dir", r.stderr)
            return
        rows = [("alpha.pdf", p) for p in range(3)] + [("beta.pdf", p) for p in range(2)]
        table = pyarrow.table({
            "doc_name": [d for d, _ in rows],
            "passage_id": [str(p) for _, p in rows],
            "image_binary": [png_bytes(rgb=(i, i, i)) for i in range(len(rows))],
        })
        parquet = os.path.join(self.tmp, "MMDocIR_pages.parquet")
        pq.write_table(table, parquet)
        records = self.convert("--parquet", parquet)
        self.assertEqual(records[2]["candidates"][1],
                         {"id": "beta.pdf#1", "image": "pages/beta/1.jpg"})
        with open(os.path.join(os.path.dirname(self.output), "pages", "beta", "1.jpg"), "rb") as f:
            self.assertEqual(f.read(), png_bytes(rgb=(4, 4, 4)))


@unittest.skipUnless(os.path.isfile(SHARED_ANNOTATIONS),
                     f"MMDocIR annotations not found at {SHARED_ANNOTATIONS}")
class RealAnnotations(unittest.TestCase):
    def test_first_three_documents(self):
        with open(SHARED_ANNOTATIONS, encoding="utf-8") as handle:
            docs = [json.loads(next(handle)) for _ in range(3)]
        tmp = tempfile.mkdtemp(prefix="zr_mmdocir_real_")
        try:
            pages = os.path.join(tmp, "pages")
            png = png_bytes()
            for doc in docs:
                start, end = doc["page_indices"]
                for page in range(end - start + 1):
                    write_file(os.path.join(pages, doc["doc_name"], f"{page}.png"), png)
            output = os.path.join(tmp, "batch.jsonl")
            r = subprocess.run([sys.executable, SCRIPT, "--annotations", SHARED_ANNOTATIONS,
                                "--pages-dir", pages, "--output", output, "--limit", "3"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(output, encoding="utf-8") as handle:
                records = [json.loads(line) for line in handle]
        finally:
            shutil.rmtree(tmp)

        self.assertEqual(len(records), sum(len(d["questions"]) for d in docs))
        i = 0
        for doc in docs:
            n_pages = doc["page_indices"][1] - doc["page_indices"][0] + 1
            for q_idx, q in enumerate(doc["questions"]):
                record = records[i]
                i += 1
                self.assertEqual(set(record), {"query_id", "query", "candidates", "relevant",
                                               "domain", "doc_name", "q_idx"})
                self.assertEqual(record["query_id"], f"{doc['doc_name']}_{q_idx}")
                self.assertEqual(record["query"], q["Q"])
                self.assertEqual(record["domain"], doc["domain"])
                self.assertEqual(len(record["candidates"]), n_pages)
                ids = [c["id"] for c in record["candidates"]]
                self.assertEqual(ids, [f"{doc['doc_name']}#{p}" for p in range(n_pages)])
                self.assertEqual(record["relevant"],
                                 [f"{doc['doc_name']}#{p}" for p in q["page_id"]])
                self.assertTrue(set(record["relevant"]) <= set(ids))


if __name__ == "__main__":
    unittest.main()
