"""Tests of the small model's evaluation scripts: the groff PDF set (scripts/make_pdf_eval.py), the
OCR + BM25 baseline (scripts/ocr_bm25_baseline.py) and the loss-curve plot
(scripts/plot_metrics.py).

Run from the repository root: python3 -m unittest discover -s tests/scripts
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import make_pdf_eval  # noqa: E402
import ocr_bm25_baseline  # noqa: E402

DOC = {
    "title": "Annual Message, 1850",
    "author": "A. President",
    "header": "Annual Message",
    "sections": [
        {"heading": "Whaling and the Pacific Trade",
         "blocks": [".starts with a dot and has a back\\slash", "The harpooneers sailed west."]},
        {"heading": "Tariff and Revenue",
         "blocks": [{"items": ["Duties on iron rose.", "Duties on wool fell."]},
                    {"type": "table", "caption": "Most frequent terms", "header": ["Term", "Count"],
                     "rows": [["tariff", "4"], ["revenue", "3"]]}]},
    ],
}


class GroffSource(unittest.TestCase):
    def test_escaping_keeps_text_literal(self):
        self.assertEqual(make_pdf_eval.esc(".TL is text"), "\\&.TL is text")
        self.assertEqual(make_pdf_eval.esc("'quoted"), "\\&'quoted")
        self.assertEqual(make_pdf_eval.esc("a\\b\nc"), "a\\eb c")

    def test_document_structure(self):
        style = {"family": "P", "size": 11, "columns": 2, "numbered": True, "paper": "a4"}
        src = make_pdf_eval.to_ms(DOC, style).splitlines()
        self.assertIn(".fam P", src)
        self.assertIn(".2C", src)
        self.assertEqual(src.count(".NH"), 2)
        self.assertIn("\\&.starts with a dot and has a back\\eslash", src)
        self.assertEqual(sum(line.startswith(".IP \\(bu") for line in src), 2)
        self.assertIn(".TS", src)
        self.assertIn("tariff\t4", src)
        plain = make_pdf_eval.to_ms(DOC, {**style, "numbered": False, "columns": 1})
        self.assertNotIn(".NH", plain)
        self.assertNotIn(".2C", plain)

    def test_queries_point_at_the_page_that_holds_them(self):
        pages = ["Whaling and the Pacific Trade\nThe harpooneers sailed west across the wide ocean " * 3,
                 "Tariff and Revenue\n" + " ".join(f"word{i} duties rose steadily" for i in range(30))]
        qs, toks = make_pdf_eval.make_queries(DOC, pages, random.Random(1), 2, 3)
        headings = {q: p for kind, q, p, _ in qs if kind == "heading"}
        self.assertEqual(headings, {"Whaling and the Pacific Trade": 0, "Tariff and Revenue": 1})
        for kind, query, page, key in qs:
            self.assertTrue(make_pdf_eval.contains(toks[page], key), query)
            if kind == "phrase":  # exact phrases occur on their page only
                qt = make_pdf_eval.tokens(query)
                self.assertEqual(key, qt)
                self.assertTrue(make_pdf_eval.contains(toks[page], qt), query)
                self.assertFalse(any(make_pdf_eval.contains(toks[p], qt)
                                     for p in range(len(pages)) if p != page), query)

    def test_volumes_bind_documents_and_give_each_query_candidates_from_its_volume(self):
        T = make_pdf_eval.tokens
        docs = [{"doc_id": f"d{i}", "pdf": f"/docs/d{i}.pdf",
                 "toks": [T(f"doc{i} page{p} harpoon") for p in range(3)], "queries": []}
                for i in range(3)]
        docs[0]["queries"] = [("phrase", "doc0 page2", 2, T("doc0 page2"))]
        docs[1]["queries"] = [("heading", "doc1 page0", 0, T("doc1 page0")),
                              ("phrase", "harpoon", 1, T("harpoon"))]  # on every page: ambiguous
        docs[2]["queries"] = [("perturbed", "page1 doc2", 1, T("doc2 page1"))]
        bound = []
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "volumes")
            args = mock.Mock(volume_pages=5, candidates=4, seed=3)
            with mock.patch.object(make_pdf_eval.subprocess, "run",
                                   lambda cmd, check: bound.append(cmd)), mock.patch("sys.stderr"):
                make_pdf_eval.write_volumes(docs, args, out)
            with open(os.path.join(out, "queries.jsonl")) as f:
                rows = [json.loads(line) for line in f]
            with open(os.path.join(out, "stats.json")) as f:
                stats = json.load(f)
        # d0+d1 reach 5 pages: one volume; d2 alone is too short and joins it.
        self.assertEqual(len(bound), 1)
        self.assertEqual(bound[0][0], "pdfunite")
        self.assertEqual(bound[0][1:4], ["/docs/d0.pdf", "/docs/d1.pdf", "/docs/d2.pdf"])
        self.assertEqual(stats["volumes"], 1)
        self.assertEqual(stats["pages"], 9)
        self.assertEqual(stats["queries_left_out_ambiguous"], 1)
        self.assertEqual([r["query_id"] for r in rows], ["d0/q00", "d1/q00", "d2/q00"])
        # Pages are numbered through the volume; the right page is among the candidates.
        self.assertEqual([r["relevant"] for r in rows],
                         [["volume01.pdf#3"], ["volume01.pdf#4"], ["volume01.pdf#8"]])
        for r in rows:
            self.assertEqual(len(r["candidates"]), 4)
            self.assertIn(r["relevant"][0], [c["id"] for c in r["candidates"]])
            self.assertTrue(all(c["pdf"] == os.path.join("docs", "volume01.pdf")
                                for c in r["candidates"]))

    @unittest.skipUnless(shutil.which("groff") and shutil.which("pdftotext"),
                         "groff (pdf device) and poppler-utils are not installed")
    def test_groff_typesets_a_pdf_whose_text_holds_the_headings(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "doc.ms")
            with open(src, "w") as f:
                f.write(make_pdf_eval.to_ms(DOC, {"family": "T", "size": 10, "columns": 1,
                                                  "numbered": False, "paper": "letter"}))
            pdf = os.path.join(tmp, "doc.pdf")
            with open(pdf, "wb") as f:
                subprocess.run(["groff", "-t", "-ms", "-Tpdf", "-dpaper=letter", "-P-pletter", src],
                               check=True, stdout=f)
            text = " ".join(make_pdf_eval.page_texts(pdf))
            self.assertIn("Tariff and Revenue", text)
            self.assertIn(".starts with a dot", text)


class OcrBaseline(unittest.TestCase):
    def test_ranks_each_query_by_bm25_over_recognised_text(self):
        with tempfile.TemporaryDirectory() as tmp:
            pages = {"p1.png": "the whale and the sea", "p2.png": "tariff revenue duties",
                     "p3.png": "white whale white whale ahab"}
            os.makedirs(os.path.join(tmp, "doc"))
            for name in pages:
                open(os.path.join(tmp, "doc", name), "wb").close()
            queries = os.path.join(tmp, "queries.jsonl")
            with open(queries, "w") as f:
                for qid, q in (("q1", "white whale"), ("q2", "tariff")):
                    f.write(json.dumps({"query_id": qid, "query": q, "candidates": [
                        {"id": n, "image": f"doc/{n}"} for n in pages]}) + "\n")
            run = os.path.join(tmp, "run.jsonl")

            def fake_ocr(key, cache):
                return pages[os.path.basename(key[1])]
            argv = ["ocr_bm25_baseline.py", "--queries", queries, "--out", run, "--cache",
                    os.path.join(tmp, "cache"), "--jobs", "1"]
            with mock.patch.object(ocr_bm25_baseline, "ocr_page", fake_ocr), \
                    mock.patch.object(ocr_bm25_baseline.shutil, "which", lambda _: "/bin/true"), \
                    mock.patch.object(sys, "argv", argv), mock.patch("sys.stderr"):
                ocr_bm25_baseline.main()
            with open(run) as f:
                rows = [json.loads(line) for line in f]
            self.assertEqual([r["query_id"] for r in rows], ["q1", "q2"])
            self.assertEqual([c["id"] for c in rows[0]["ranking"]], ["p3.png", "p1.png", "p2.png"])
            self.assertEqual(rows[1]["ranking"][0]["id"], "p2.png")
            # Pages without any query word tie at 0 and keep the input order.
            self.assertEqual([c["id"] for c in rows[1]["ranking"][1:]], ["p1.png", "p3.png"])


class LossCurves(unittest.TestCase):
    def test_one_line_per_run_and_panel(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs = []
            for name, key in (("a", "rank_loss"), ("b", "align_loss")):
                path = os.path.join(tmp, f"{name}.jsonl")
                with open(path, "w") as f:
                    for step in range(1, 31):
                        f.write(json.dumps({"step": step, key: 1.0 / step, "gen_loss": 2.0}) + "\n")
                runs.append(f"{name}={path}")
            out = os.path.join(tmp, "curves.svg")
            subprocess.run([sys.executable, os.path.join(REPO, "scripts", "plot_metrics.py"),
                            "--out", out, "--smooth", "5", *runs], check=True, capture_output=True)
            with open(out) as f:
                svg = f.read()
            # Panels: rank (a), align (b), generation (a and b).
            self.assertEqual(svg.count("<polyline"), 4)
            self.assertIn("ranking loss", svg)
            self.assertIn("word-grounding loss", svg)
            bad = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "plot_metrics.py"),
                                  "--out", out, "nofile"], capture_output=True, text=True)
            self.assertNotEqual(bad.returncode, 0)
            self.assertIn("NAME=metrics.jsonl", bad.stderr)


if __name__ == "__main__":
    unittest.main()
