#!/usr/bin/env python3
"""Runs the ZipRerank reference pipeline (github.com/dukesun99/ZipRerank) beside ziprerank.

The reference's own code is imported from a checkout of its repository and called, in the
reference environment that scripts/reference_env.sh makes, on the tiny random model
"deepstack3" of the transformers parity fixture (tests/fixtures/parity). What it produces is
written as a fixture that tests/model/test_parity.cpp (Parity.Reference*) checks ziprerank
against. None of the reference's code is copied here or committed.

    python scripts/make_reference_fixture.py --reference REF tests/fixtures/parity/reference
    python scripts/make_reference_fixture.py --reference REF --check tests/fixtures/parity/reference

REF is a checkout of the reference repository; without --reference the script clones it into a
temporary folder (exit status 3 with one line when that fails, e.g. offline). With --check the
fixture is made again in a temporary folder and compared with the given one.

What the fixture holds (reference.json, reference_tensors.safetensors, pages/):
  * prompt token ids of a 5-candidate window, built by the reference's
    create_ranking_prompt_for_training + prepare_ranking_inputs through Qwen3VLProcessor;
  * the QI-Early kept indices per page (Qwen3VLWithQIEarly's pruner) at keep 0.5 and 0.25 in
    both text modes ("all_before_image", "query_only"), with the logits at the trailing "[";
  * the logits at "[" without pruning; greedy generation's tokens, text and parsed ranking
    (rerank_window_with_images with use_logits=False);
  * final rankings through the reference's evaluate_mmdocir (pages as PNG bytes, opened by its
    get_image_from_binary) for 1, 5, 9, 10, 11, 20, 21, 30 and 45 candidates at window 20 /
    stride 10, without pruning and at keep 0.5.

Adaptations, all outside the reference's files (its code runs unchanged):
  * modules the called code does not use but imports at the top (datasets, ftfy, accelerate,
    pandas where absent) are replaced by empty stand-ins, so the pinned environment needs nothing
    more than transformers;
  * scripts/evaluate.py's per-run globals _eval_stats and _inference_timer (set by its main())
    are set to None;
  * the model runs in float32 with eager attention on CPU (the reference evaluates in bfloat16 on
    GPU), so that ziprerank can be held to float32 tolerances;
  * the processor is a Qwen3VLProcessor built from the model folder's image processor and
    tokenizer, with CHAT_TEMPLATE below: Qwen3-VL's chat template reduced to what a ranking prompt
    uses (user turns with text and images, the generation prompt; no system turn, no vision ids).
"""
import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import types

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference's progress bars
import make_parity_fixture as mpf  # noqa: E402  (pins the CPU code paths before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    Qwen2TokenizerFast, Qwen2VLImageProcessorFast, Qwen3VLProcessor, Qwen3VLVideoProcessor)

REFERENCE_URL = "https://github.com/dukesun99/ZipRerank"
MODEL = "deepstack3"
QUERY = "parity test"
WINDOW, STRIDE = 20, 10
COUNTS = [1, 5, 9, 10, 11, 20, 21, 30, 45]
KEEPS = [0.5, 0.25]
MODES = ["all_before_image", "query_only"]
# Generated texts for the reference's parse_generated_ranking (the random model only repeats one
# token): letters, brackets, out-of-range letters, digits with leading zeros, very long numbers,
# Unicode decimal digits (Python's \d), nothing parsable.
PARSE_TEXTS = ["A] > [C] > [B]", "[B] > [B] > [Z] > [A]", "C > A", "Hello World", "2] > [1]", "",
               "[U] > [T] > [A]", "no ranking here", "3 > 10 > 1", "000003 > 2", "\uff13 > \uff11",
               "\u0663 > \u0661 > 2", "99999999999999999999 > 4", "[D]>[c]>[a]", "  [E] "]

# The window whose prompt, pruning, logits and generation are recorded: images of the parity
# fixture (tests/fixtures/parity/images), in this order.
WINDOW_IMAGES = ["landscape", "portrait", "huge", "halves", "sliver"]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}")


def stub_missing_modules():
    """Empty stand-ins for third-party modules the reference imports but the called code never
    uses; a call into one fails loudly."""
    def unavailable(name):
        def fail(*_a, **_k):
            raise RuntimeError(f"{name} is not available in the reference environment")
        return fail

    stubs = {
        "datasets": {"load_dataset": unavailable("datasets.load_dataset")},
        "ftfy": {"fix_text": unavailable("ftfy.fix_text")},
        "accelerate": {},
        "accelerate.logging": {"get_logger": logging.getLogger},
        "pandas": {"DataFrame": type("DataFrame", (), {}),
                   "read_parquet": unavailable("pandas.read_parquet")},
    }
    for name, attrs in stubs.items():
        try:
            __import__(name)
            continue
        except ImportError:
            pass
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        if "." in name:
            setattr(sys.modules[name.rsplit(".", 1)[0]], name.rsplit(".", 1)[1], module)


def import_reference(checkout):
    """The reference's scripts/evaluate.py (which imports its utils and models packages)."""
    stub_missing_modules()
    sys.path.insert(0, os.path.abspath(checkout))
    import importlib
    evaluate = importlib.import_module("scripts.evaluate")
    qi = importlib.import_module("models.qwen3vl_with_qi_early")
    evaluate._eval_stats = None
    evaluate._inference_timer = None
    return evaluate, qi.Qwen3VLWithQIEarly


def obtain_checkout(path, tmp):
    if path:
        if not os.path.isfile(os.path.join(path, "models", "qwen3vl_with_qi_early.py")):
            raise SystemExit(f"{path} is not a checkout of {REFERENCE_URL}")
        return path
    dest = os.path.join(tmp, "ZipRerank")
    try:
        subprocess.run(["git", "clone", "-q", "--depth", "1", REFERENCE_URL, dest], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    except (subprocess.SubprocessError, OSError):
        print(f"reference pipeline unavailable: cannot clone {REFERENCE_URL}", file=sys.stderr)
        sys.exit(3)
    return dest


def make_processor(model_dir):
    image = Qwen2VLImageProcessorFast.from_pretrained(model_dir)
    tokenizer = Qwen2TokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    video = Qwen3VLVideoProcessor(patch_size=image.patch_size, merge_size=image.merge_size)
    return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                            chat_template=CHAT_TEMPLATE)


def make_pages(pages_dir, n):
    """n distinct small pages (sizes from 24 to 150 pixels a side) for the ranking runs."""
    rng = np.random.default_rng(7)
    os.makedirs(pages_dir, exist_ok=True)
    names = []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(24, 151, size=2))
        name = f"p{i:02d}"
        mpf.make_image(name, w, h, "RGB", seed=100 + i).save(os.path.join(pages_dir, name + ".png"))
        names.append(name)
    return names


class Recorder:
    """Wraps a callable and keeps what it returned last."""

    def __init__(self, fn):
        self.fn, self.last = fn, None

    def __call__(self, *a, **k):
        self.last = self.fn(*a, **k)
        return self.last


def generate(out_dir, checkout, parity_dir):
    torch.set_num_threads(1)
    evaluate, QIModel = import_reference(checkout)
    model_dir = os.path.join(parity_dir, MODEL)
    processor = make_processor(model_dir)
    tokenizer = processor.tokenizer
    model = QIModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    pruner_calls = Recorder(model.qi_early_pruner.forward)
    model.qi_early_pruner.forward = pruner_calls
    generate_calls = Recorder(model.generate)
    model.generate = generate_calls

    tensors = {}
    meta = {"reference": REFERENCE_URL, "model": f"../{MODEL}", "query": QUERY, "window": WINDOW,
            "stride": STRIDE, "dtype": "float32", "attention": "eager",
            "window_images": WINDOW_IMAGES, "chat_template": CHAT_TEMPLATE}
    if os.path.isdir(os.path.join(checkout, ".git")):
        meta["reference_commit"] = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"],
                                                  capture_output=True, text=True).stdout.strip()

    # One window through the reference's prompt and input preparation.
    images = [Image.open(os.path.join(parity_dir, "images", f"{n}.png")).convert("RGB")
              for n in WINDOW_IMAGES]
    prompt = evaluate.create_ranking_prompt_for_training(QUERY, len(images), use_query_adapter=False)
    inputs = evaluate.prepare_ranking_inputs(prompt, images, processor)
    ids = torch.tensor([inputs["input_ids"]])
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                 pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
    letters = [tokenizer.encode(chr(65 + i), add_special_tokens=False)[0] for i in range(len(images))]
    meta["prompt"] = {"input_ids": inputs["input_ids"], "grid_thw": inputs["image_grid_thw"].tolist(),
                      "identifier_ids": letters}

    with torch.no_grad():
        model.set_qi_early_enabled(False)
        tensors["logits.full"] = model(**batch).logits[0, -1].float().contiguous()
        model.set_qi_early_enabled(True)
        pruning = []
        for mode in MODES:
            model.set_qi_early_text_mode(mode)
            for keep in KEEPS:
                model.set_qi_early_keep_ratio(keep)
                logits = model(**batch).logits[0, -1]
                kept = [k.tolist() for k in pruner_calls.last[1]]
                key = f"logits.{mode}.{keep}"
                tensors[key] = logits.float().contiguous()
                pruning.append({"text_mode": mode, "keep_ratio": keep, "kept": kept, "logits": key})
        meta["pruning"] = pruning

    # Generate mode on the same window, through the reference's window ranking.
    model.set_qi_early_enabled(False)
    log = io.StringIO()
    order = evaluate.rerank_window_with_images(model, processor, QUERY, "q", images, 0, len(images),
                                               use_logits=False, log_file=log)
    new_tokens = generate_calls.last[0][ids.shape[1]:].tolist()
    meta["generate"] = {"tokens": new_tokens,
                        "text": tokenizer.decode(new_tokens, skip_special_tokens=True),
                        "order": order, "max_new_tokens": 5 * len(images)}

    meta["parse"] = [{"text": t, "window": w, "order": evaluate.parse_generated_ranking(t, w)}
                     for t in PARSE_TEXTS for w in (5, 20)]

    # Final rankings through evaluate_mmdocir: pages as PNG bytes, as its parquet rows hold them.
    pages_dir = os.path.join(out_dir, "pages")
    names = make_pages(pages_dir, max(COUNTS))
    blobs = [open(os.path.join(pages_dir, n + ".png"), "rb").read() for n in names]

    class Rows:  # what evaluate_mmdocir reads of a parquet DataFrame: .iloc[i]['image_binary']
        iloc = [{"image_binary": b} for b in blobs]

    rankings = []
    for keep in (1.0, 0.5):
        if keep < 1.0:
            model.set_qi_early_enabled(True)
            model.set_qi_early_text_mode("all_before_image")
            model.set_qi_early_keep_ratio(keep)
        first_stage = {
            f"n{n}": {"query": QUERY, "doc_name": "d", "q_idx": n, "domain": "", "page_id": [],
                      "type": "", "layout_mapping": [], "start_idx": 0, "end_idx": n,
                      "top_k_global_indices": list(range(n))} for n in COUNTS}
        results = evaluate.evaluate_mmdocir(model, processor, first_stage, Rows(), mode="page",
                                            window_size=WINDOW, stride=STRIDE, use_logits=True,
                                            sample_size=0)
        for n, r in zip(COUNTS, results):
            rankings.append({"candidates": n, "keep_ratio": keep, "ranking": r["ranked_indices"]})
    model.set_qi_early_enabled(False)
    meta["pages"] = [f"pages/{n}.png" for n in names]
    meta["rankings"] = rankings

    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "reference_tensors.safetensors"))
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        f.write(mpf.dump_json(meta))
    print(f"reference pipeline: {len(rankings)} rankings, {len(pruning)} pruning runs, generated "
          f"{len(new_tokens)} tokens", file=sys.stderr)


def compare(fresh, committed):
    problems = []
    a = json.load(open(os.path.join(fresh, "reference.json")))
    b = json.load(open(os.path.join(committed, "reference.json")))
    for key in sorted(set(a) | set(b)):
        if key != "reference_commit" and a.get(key) != b.get(key):
            problems.append(f"reference.json: '{key}' differs")
    ta = load_file(os.path.join(fresh, "reference_tensors.safetensors"))
    tb = load_file(os.path.join(committed, "reference_tensors.safetensors"))
    for k in sorted(set(ta) | set(tb)):
        if k not in ta or k not in tb or ta[k].shape != tb[k].shape:
            problems.append(f"tensor {k}: missing or of another shape")
        elif (d := float((ta[k] - tb[k]).abs().max())) > 1e-6:
            problems.append(f"tensor {k}: max |diff| {d:.3g}")
    for page in b.get("pages", []):
        pa = np.asarray(Image.open(os.path.join(fresh, page)))
        pb = np.asarray(Image.open(os.path.join(committed, page)))
        if pa.shape != pb.shape or not np.array_equal(pa, pb):
            problems.append(f"{page}: pixels differ")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default="tests/fixtures/parity/reference")
    ap.add_argument("--reference", help="checkout of the reference repository (default: git clone)")
    ap.add_argument("--parity", help="the parity fixture holding the model (default: DIR/..)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with DIR")
    args = ap.parse_args()
    parity = args.parity or os.path.dirname(os.path.abspath(args.dir))
    with tempfile.TemporaryDirectory() as tmp:
        checkout = obtain_checkout(args.reference, tmp)
        if not args.check:
            shutil.rmtree(os.path.join(args.dir, "pages"), ignore_errors=True)
            with contextlib.redirect_stdout(sys.stderr):  # the reference's progress lines
                generate(args.dir, checkout, parity)
            print(f"wrote the reference fixture to {args.dir}", file=sys.stderr)
            return 0
        fresh = os.path.join(tmp, "fresh")
        with contextlib.redirect_stdout(sys.stderr):
            generate(fresh, checkout, parity)
        problems = compare(fresh, args.dir)
    if problems:
        print(f"the reference fixture in {args.dir} differs from a regeneration:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"the reference fixture in {args.dir} matches a regeneration", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
