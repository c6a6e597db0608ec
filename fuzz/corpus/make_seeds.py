#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/ (standard library only).

The image seeds come from build-fuzz/fuzz/make_image_seeds (OpenCV); config and safetensors seeds
are copies of test fixtures made elsewhere. Run from anywhere: python3 fuzz/corpus/make_seeds.py
"""
import json
import os
import shutil
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def write(target, name, data):
    folder = os.path.join(HERE, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def compact(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------------------------------
# tokenizer.json


def byte_char(b):
    """The byte -> character map of byte-level BPE (GPT-2's bytes_to_unicode)."""
    printable = lambda x: 0x21 <= x <= 0x7E or 0xA1 <= x <= 0xAC or x >= 0xAE
    if printable(b):
        return chr(b)
    return chr(256 + sum(1 for x in range(b) if not printable(x)))


def pre_tokenizer(regex):
    return {"type": "Sequence",
            "pretokenizers": [{"type": "Split", "pattern": {"Regex": regex},
                               "behavior": "Isolated", "invert": False},
                              {"type": "ByteLevel", "add_prefix_space": False,
                               "trim_offsets": False, "use_regex": False}]}


def added(id_, content, special, **flags):
    token = {"id": id_, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": not special, "special": special}
    token.update(flags)
    return token


def tokenizer_seeds():
    # Qwen-shaped: all 256 byte characters, merges in both spellings, every added-token flag.
    vocab = {byte_char(b): b for b in range(256)}
    merges = []
    for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("o", "r"),
                 ("Ġw", "or"), ("1", "2")]:
        merges.append([a, b] if len(merges) % 2 else a + " " + b)
        vocab.setdefault(a + b, len(vocab))
    full = {"version": "1.0",
            "added_tokens": [added(300, "<|im_start|>", True), added(301, "<|im_end|>", True),
                             added(302, "[M]", True, lstrip=True), added(303, "<R>", True, rstrip=True),
                             added(304, "sw", False, single_word=True),
                             added(305, "\u00e9", False, normalized=True)],
            "normalizer": {"type": "NFC"}, "pre_tokenizer": pre_tokenizer(QWEN2_REGEX),
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False,
                      "vocab": vocab, "merges": merges}}
    write("tokenizer", "qwen_like.json", compact(full))
    # Tiny: no byte alphabet, so unknown bytes take the byte-fallback, unk and fuse_unk paths.
    tiny = {"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
            "pre_tokenizer": pre_tokenizer(QWEN2_REGEX),
            "added_tokens": [added(9, "<s>", True)],
            "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
                      "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "<0x41>": 4, "<0xC3>": 5,
                                "<0x84>": 6, "Ġ": 7},
                      "merges": ["a b"]}}
    write("tokenizer", "tiny_fallback.json", compact(tiny))
    # Llama 3 split, ignore_merges, a gap in the ids, no normalizer.
    llama = {"pre_tokenizer": pre_tokenizer(LLAMA3_REGEX),
             "added_tokens": [added(20, "<|eot|>", True)],
             "model": {"type": "BPE", "ignore_merges": True,
                       "vocab": {"1": 0, "2": 1, "3": 2, "12": 3, "123": 5, "x": 6},
                       "merges": [["1", "2"], ["12", "3"]]}}
    write("tokenizer", "llama3_ignore_merges.json", compact(llama))


# ------------------------------------------------------------------------------------------------
# preprocessor_config.json


def preprocessor_seeds():
    os.makedirs(os.path.join(HERE, "preprocessor_config"), exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tests/fixtures/config/qwen3_vl_8b_preprocessor_config.json"),
                os.path.join(HERE, "preprocessor_config", "qwen3_vl.json"))
    write("preprocessor_config", "qwen2_vl.json", compact({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type":
        "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor", "resample": 3,
        "rescale_factor": 0.00392156862745098, "do_resize": True, "do_rescale": True,
        "do_normalize": True, "do_convert_rgb": True}))
    write("preprocessor_config", "minimal.json",
          '{"size":{"shortest_edge":1,"longest_edge":2},"resample":2,"do_normalize":false}')


# ------------------------------------------------------------------------------------------------
# batch JSONL records, runs, qrels


def eval_seeds():
    write("batch_record", "images.jsonl", compact({
        "query_id": "q1", "query": "What is the revenue in 2023?",
        "candidates": [{"id": "d#0", "image": "pages/0.png"}, {"id": "d#1", "image": "/abs/1.jpg"}],
        "relevant": ["d#1"], "domain": "Financial"}))
    write("batch_record", "pdf_pages.jsonl", compact({
        "query_id": 17, "query": "caf\u00e9 \u2014 r\u00e9sum\u00e9",
        "candidates": [{"id": 3, "pdf": "../doc.pdf", "page": 1},
                       {"id": "x", "pdf": "doc.pdf", "page": 12}]}))
    write("batch_record", "bad_candidate.jsonl",
          '{"query_id":"q","query":"x","candidates":[{"id":"a","image":"a.png","pdf":"b.pdf"}]}')

    write("run", "run.jsonl",
          compact({"query_id": "q1", "ranking": [{"id": "d#1", "score": 2.5},
                                                 {"id": "d#0", "score": -1e300}, {"id": 7}]}) +
          "\n" + compact({"query_id": 2, "error": "cannot open 'x.png'"}) + "\n\n" +
          compact({"query_id": "q3", "ranking": []}) + "\n")
    write("run", "run.trec",
          "q1 Q0 d#1 1 2.5 ziprerank\nq1 Q0 d#0 2 1e+05 ziprerank\n"
          "q2 Q0 e 1 -inf tag\r\nq1 Q0 d#2 2 0 tag\n  \n")

    write("qrels", "qrels.jsonl",
          compact({"query_id": "q1", "query": "a", "relevant": ["d#1", "d#1"], "domain": "Laws",
                   "candidates": [{"id": "d#0", "image": "0.png"}, {"id": "d#1", "image": "1.png"}]})
          + "\n" + compact({"query_id": 2, "relevant": [5], "domain": "News"}) + "\n" +
          compact({"query_id": "q3", "relevant": []}) + "\n")
    write("qrels", "qrels.trec", "q1 0 d#1 1\nq1 0 d#0 0\nq2 0 e 2\r\nq3 0 f -1\n")


# ------------------------------------------------------------------------------------------------
# PDF


def pdf(objects, root=1):
    """A PDF file from object bodies (numbered from 1), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, xref)
    return bytes(out)


def stream(dictionary, data, compress=False):
    if compress:
        data = zlib.compress(data)
        dictionary += b" /Filter /FlateDecode"
    return b"<< %s /Length %d >>\nstream\n" % (dictionary, len(data)) + data + b"\nendstream"


def pdf_seeds():
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    text = b"BT /F1 24 Tf 10 40 Td (Hello, PDF) Tj ET"
    write("pdf", "text.pdf", pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        stream(b"", text),
        font]))
    drawing = (b"0.2 0.4 0.8 rg 10 10 80 50 re f 1 0 0 RG 4 w 0 0 m 100 100 l S "
               b"q 0.5 0 0 0.5 50 50 cm 0 g 0 0 m 40 0 l 20 30 l h f Q")
    write("pdf", "vector_two_pages.pdf", pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 120 120] /Contents 5 0 R >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 80] /CropBox [10 10 200 70] "
        b"/Rotate 90 /Contents 5 0 R >>",
        stream(b"", drawing, compress=True)]))
    pixels = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0])
    content = (b"q 80 0 0 80 10 10 cm /Im1 Do Q q 20 0 0 20 95 5 cm "
               b"BI /W 2 /H 1 /BPC 8 /CS /G ID \x10\xf0 EI Q /Fm1 Do")
    write("pdf", "images.pdf", pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 120 100] /Contents 4 0 R "
        b"/Resources << /XObject << /Im1 5 0 R /Fm1 6 0 R >> >> >>",
        stream(b"", content),
        stream(b"/Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceRGB "
               b"/BitsPerComponent 8", pixels, compress=True),
        stream(b"/Type /XObject /Subtype /Form /BBox [0 0 50 50]", b"0 1 0 rg 5 5 20 20 re f")]))
    # No xref table at all: poppler has to reconstruct it.
    write("pdf", "no_xref.pdf", b"%PDF-1.1\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
          b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
          b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 50 50] >> endobj\n"
          b"trailer << /Root 1 0 R >>\n%%EOF\n")


def main():
    tokenizer_seeds()
    preprocessor_seeds()
    eval_seeds()
    pdf_seeds()
    os.makedirs(os.path.join(HERE, "sentencepiece"), exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tests/fixtures/spm/tiny.model"),
                os.path.join(HERE, "sentencepiece", "tiny.model"))
    seeds = os.path.join(ROOT, "build-fuzz", "fuzz", "make_image_seeds")
    if os.path.exists(seeds):
        os.makedirs(os.path.join(HERE, "image"), exist_ok=True)
        os.system(f"'{seeds}' '{os.path.join(HERE, 'image')}'")
    else:
        print("build-fuzz/fuzz/make_image_seeds not built: image seeds left as they are")


if __name__ == "__main__":
    main()
