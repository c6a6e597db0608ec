#!/usr/bin/env python3
"""ziprerank against Hugging Face transformers' Qwen3-VL, per stage, on the same random model, the
same pages, the same prompt length and the same number of threads.

Runs in the reference environment (torch + transformers; see scripts/reference_env.sh):

    python="$(scripts/reference_env.sh)"
    "$python" scripts/bench_vs_transformers.py --shape 8b-2layers --pages 20   # ~10 min on 2 cores
    "$python" scripts/bench_vs_transformers.py --dry-run                       # tiny model, < 60 s

The model folder is made by `ziprerank init` (random weights of the chosen shape; --model takes an
existing folder instead) and read by both. Per round and dtype, transformers (sdpa attention,
model kept loaded, one untimed warm-up forward first) and then a fresh `ziprerank bench` process
(one warm-up run and one timed run per keep ratio) rank the same pages; rounds alternate so that
load from other processes falls on both alike. Stage times are medians over the rounds.

Stages: preprocess = pixels to patch rows (transformers' fast image processor, every page);
vision = the vision tower with its mergers (transformers: get_image_features); llm = the rest of
one forward pass up to the logits at the last position (transformers: the full forward with
logits_to_keep=1 minus its vision time; ziprerank: pruning/assembly + language model).
transformers has no pruning: ziprerank's keep < 1 rows are compared with transformers' one row.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERY = "Which page reports the net revenue by year?"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ziprerank", default=os.path.join(ROOT, "build", "ziprerank"), help="the binary")
    p.add_argument("--model", help="an existing model folder (Hugging Face layout) instead of --shape")
    p.add_argument("--shape", default="8b-2layers", choices=["8b-2layers", "2b", "tiny"],
                   help="random model to make with `ziprerank init`: Qwen3-VL-8B's dimensions with 2 "
                        "language-model and 2 vision layers, Qwen3-VL-2B's, or ziprerank's tiny one")
    p.add_argument("--workdir", help="where the model and pages go (default: a temporary folder)")
    p.add_argument("--pages", type=int, default=20, help="pages in the window")
    p.add_argument("--page-size", default="791x1024", help="synthetic page size WxH")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds (medians over them)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes to compare")
    p.add_argument("--keep-ratios", default="1.0,0.5,0.25", help="ziprerank's keep ratios")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both run there)")
    p.add_argument("--scorings", default="logits",
                   help="logits (one forward pass), generate (greedy decoding; transformers decodes "
                        "as many tokens as ziprerank did), or both")
    p.add_argument("--json", help="also write the medians here")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny model, 3 small pages, 1 round: checks the script end to end")
    a = p.parse_args()
    if a.dry_run:
        a.shape, a.pages, a.page_size, a.rounds, a.dtypes = "tiny", 3, "320x400", 1, "float32,bfloat16"
        a.keep_ratios = "1.0,0.5"
        a.threads = min(a.threads, 2)
    return a


def load_torchvision(torch):
    """transformers' fast image processor resizes with torchvision. PyPI's torchvision wheel is built
    against CUDA torch; beside the CPU torch its operator library does not load and its import
    stops at registering fake kernels for nms/qnms. The image transforms do not need that library:
    define the two operator schemas, then import."""
    if getattr(load_torchvision, "done", False):
        return
    load_torchvision.done = True
    import importlib.util
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise SystemExit("torchvision is missing from this environment (scripts/reference_env.sh)")
    for lib in glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")):
        try:
            torch.ops.load_library(lib)
            return
        except OSError:
            break
    schemas = torch.library.Library("torchvision", "DEF")
    schemas.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    schemas.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    load_torchvision.schemas = schemas


def shape_config(shape, out_path):
    """config.json for `ziprerank init`: None for the tiny built-in one."""
    if shape == "tiny":
        return None
    if shape == "8b-2layers":
        with open(os.path.join(ROOT, "tests", "fixtures", "config", "qwen3_vl_8b_config.json")) as f:
            c = json.load(f)
        c["text_config"]["num_hidden_layers"] = 2
        c["vision_config"]["depth"] = 2
        c["vision_config"]["deepstack_visual_indexes"] = [0, 1]
    else:  # Qwen3-VL-2B's published dimensions
        c = {"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
             "tie_word_embeddings": True,
             "text_config": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                             "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                             "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 5000000.0,
                             "max_position_embeddings": 262144, "tie_word_embeddings": True,
                             "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                                              "mrope_interleaved": True}},
             "vision_config": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096,
                               "num_heads": 16, "out_hidden_size": 2048, "patch_size": 16,
                               "spatial_merge_size": 2, "temporal_patch_size": 2,
                               "num_position_embeddings": 2304, "hidden_act": "gelu_pytorch_tanh",
                               "deepstack_visual_indexes": [5, 11, 17]}}
    with open(out_path, "w") as f:
        json.dump(c, f, indent=1)
    return out_path


def make_model(a, work):
    folder = os.path.join(work, f"model-{a.shape}")
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return folder
    cmd = [a.ziprerank, "--log-level", "warn", "init", "--out", folder, "--seed", "0", "--force"]
    cfg = shape_config(a.shape, os.path.join(work, f"config-{a.shape}.json"))
    if cfg:
        cmd += ["--config", cfg]
    print(f"making the {a.shape} model: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, check=True)
    return folder


def make_pages(n, size, folder):
    """Deterministic document-like pages: a heading, lines of word boxes, a table, a figure."""
    import random
    from PIL import Image, ImageDraw
    w, h = (int(x) for x in size.split("x"))
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(7)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"page{i + 1:03d}.png")
        paths.append(path)
        if os.path.exists(path):
            continue
        im = Image.new("RGB", (w, h), "white")
        d = ImageDraw.Draw(im)
        m = max(8, w // 12)
        d.text((m, m // 2), f"Section {i + 1}", fill="black")
        y = m
        while y < h - m:
            kind = rng.randrange(10)
            if kind == 0 and y + 160 < h - m:
                for r in range(6):
                    d.line([(m, y + 30 * r), (w - m, y + 30 * r)], fill="black")
                for c in range(5):
                    x = m + c * (w - 2 * m) // 4
                    d.line([(x, y), (x, y + 150)], fill="black")
                y += 180
            elif kind == 1 and y + 200 < h - m:
                d.rectangle([m + 20, y, w - m - 20, y + 180], fill=(200, 120, 90))
                y += 210
            else:
                x = m
                while x < w - m - 20:
                    ww = min(rng.randint(8, 60), w - m - x)
                    d.rectangle([x, y, x + ww, y + 9], fill=(30, 30, 30))
                    x += ww + rng.randint(4, 10)
                y += 18
        im.save(path)
    return paths


def ranking_prompt(n):
    letters = ", ".join(f"Picture {i + 1} is passage [{chr(65 + i)}]" for i in range(n))
    before = "\n".join([
        "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy "
        "to the query.", "", f"I will provide you with {n} passages as images.",
        "Rank the passages based on their relevance to the search query.", "",
        f"The images are provided in order: {letters}.", "", f"Search Query: {QUERY}", "",
        "Rank the passages above based on their relevance to the search query.",
        "The passages should be listed in descending order using identifiers.",
        "The most relevant passages should be listed first.",
        "The output format should be [A] > [B], etc.",
        "Only output the ranking results, do not say anything else."])
    return "user\n" + before, "\nassistant\n["


class Transformers:
    """transformers' Qwen3-VL on the model folder, one instance per dtype."""

    def __init__(self, folder, dtype_name, paths, threads, device):
        import torch
        load_torchvision(torch)
        from PIL import Image
        from transformers import (PreTrainedTokenizerFast, Qwen2VLImageProcessorFast,
                                  Qwen3VLForConditionalGeneration)
        torch.set_num_threads(threads)
        self.torch = torch
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
        self.model = Qwen3VLForConditionalGeneration.from_pretrained(
            folder, dtype=dtype, attn_implementation="sdpa").eval().to(device)
        self.device = torch.device(device)
        self.dtype = dtype
        self.processor = Qwen2VLImageProcessorFast.from_pretrained(folder)
        self.images = [Image.open(p).convert("RGB") for p in paths]
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        self.ids_parts = (tok.encode(ranking_prompt(len(paths))[0], add_special_tokens=False),
                          tok.encode(ranking_prompt(len(paths))[1], add_special_tokens=False))
        self.special = (cfg["vision_start_token_id"], cfg["image_token_id"], cfg["vision_end_token_id"])

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def run(self, generate=0):
        """One window; generate > 0: greedy decoding of that many new tokens after the prompt."""
        torch = self.torch
        with torch.inference_mode():
            t0 = time.perf_counter()
            proc = self.processor(images=self.images, return_tensors="pt")
            t1 = time.perf_counter()
            px = proc["pixel_values"].to(self.device, self.dtype)
            grid = proc["image_grid_thw"].to(self.device)
            merge = self.processor.merge_size
            vs, pad, ve = self.special
            ids = list(self.ids_parts[0])
            for g in grid.tolist():
                ids += [vs] + [pad] * (g[0] * g[1] * g[2] // (merge * merge)) + [ve]
            ids += self.ids_parts[1]
            input_ids = torch.tensor([ids], device=self.device)
            mask = torch.ones_like(input_ids)
            self.sync()
            t2 = time.perf_counter()
            self.model.model.get_image_features(px, grid)
            self.sync()
            t3 = time.perf_counter()
            if generate > 0:
                self.model.generate(input_ids=input_ids, attention_mask=mask, pixel_values=px,
                                    image_grid_thw=grid, do_sample=False, max_new_tokens=generate,
                                    min_new_tokens=generate)
            else:
                out = self.model(input_ids=input_ids, attention_mask=mask, pixel_values=px,
                                 image_grid_thw=grid, logits_to_keep=1)
                float(out.logits[0, -1].float().sum())
            self.sync()
            t4 = time.perf_counter()
        vision = 1000 * (t3 - t2)
        full = 1000 * (t4 - t3)
        return {"preprocess": 1000 * (t1 - t0), "vision": vision, "llm": max(0.0, full - vision),
                "total": 1000 * (t1 - t0) + full, "tokens": len(ids)}


def run_ziprerank(a, folder, pages_dir, dtype_name, keeps, scoring):
    flags = {"float32": ["--dtype", "float32", "--matmul", "float32"],
             "bfloat16": ["--dtype", "bfloat16"],
             "float32+bf16-products": ["--dtype", "float32", "--matmul", "bfloat16"]}[dtype_name]
    cmd = [a.ziprerank, "--log-level", "warn", "bench", "--model", folder, "-p", pages_dir,
           "--scoring", scoring, "--keep-ratios", keeps, "--device", a.device, "--repeats", "1", "--warmup", "1",
           "--window", str(a.pages), "--threads", str(a.threads), "-q", QUERY,
           "--format", "jsonl"] + flags
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    rows = {}
    for line in out.splitlines():
        r = json.loads(line)
        t = r["timing_ms"]
        rows[r["keep_ratio"]] = {"preprocess": t["preprocess"]["median"], "vision": t["vision"]["median"],
                                 "llm": t["prune"]["median"] + t["llm"]["median"],
                                 "total": t["total"]["median"], "tokens": r["tokens"]["input"],
                                 "generated": r["tokens"]["generated"],
                                 "vision_gflops": r.get("gflops", {}).get("vision", 0),
                                 "llm_gflops": r.get("gflops", {}).get("llm", 0)}
    return rows


def median_rows(samples):
    keys = ["preprocess", "vision", "llm", "total"]
    return {k: statistics.median(s[k] for s in samples) for k in keys} | {"tokens": samples[0]["tokens"]}


def main():
    a = parse_args()
    start = time.time()
    if not os.path.exists(a.ziprerank):
        raise SystemExit(f"no ziprerank binary at {a.ziprerank} (build it, or pass --ziprerank)")
    work = a.workdir or tempfile.mkdtemp(prefix="zr-vs-hf-")
    os.makedirs(work, exist_ok=True)
    folder = a.model or make_model(a, work)
    pages_dir = os.path.join(work, f"pages-{a.pages}-{a.page_size}")
    paths = make_pages(a.pages, a.page_size, pages_dir)
    dtypes = [d for d in a.dtypes.split(",") if d]
    keeps = [float(k) for k in a.keep_ratios.split(",")]
    scorings = [s for s in a.scorings.split(",") if s]
    hf = {d: Transformers(folder, d, paths, a.threads, a.device) for d in dtypes}
    for d in dtypes:
        hf[d].run()  # warm-up
    cases = [(d, s) for d in dtypes for s in scorings]
    hf_samples = {c: [] for c in cases}
    zr_samples = {c: {k: [] for k in keeps} for c in cases}
    for r in range(a.rounds):
        for d, sc in cases:
            # ziprerank first: generate mode then tells transformers how many tokens to decode.
            rows = run_ziprerank(a, folder, pages_dir, d, a.keep_ratios, sc)
            for k in keeps:
                zr_samples[(d, sc)][k].append(rows[k])
            new_tokens = max(1, rows[keeps[0]]["generated"]) if sc == "generate" else 0
            hf_samples[(d, sc)].append(hf[d].run(new_tokens))
        print(f"round {r + 1}/{a.rounds} done ({time.time() - start:.0f} s)", file=sys.stderr)

    result = {"model": folder, "shape": a.model and "given" or a.shape, "pages": a.pages,
              "page_size": a.page_size, "threads": a.threads, "rounds": a.rounds,
              "device": a.device, "cases": {}}
    print(f"model {a.shape if not a.model else folder}, {a.pages} pages of {a.page_size}, "
          f"device {a.device}, {a.threads} threads, medians of {a.rounds} interleaved round(s), "
          f"times in ms")
    for d, sc in cases:
        hfm = median_rows(hf_samples[(d, sc)])
        zrm = {k: median_rows(zr_samples[(d, sc)][k]) for k in keeps}
        result["cases"][f"{d}/{sc}"] = {"transformers": hfm,
                                        "ziprerank": {str(k): v for k, v in zrm.items()}}
        base = zrm[keeps[0]]
        print(f"\n{d}, {sc}: transformers {hfm['tokens']} tokens, ziprerank {base['tokens']} tokens "
              f"(keep {keeps[0]})")
        print(f"{'stage':<11} {'transformers':>12} {'ziprerank':>10} {'ratio':>7}")
        for stage in ["preprocess", "vision", "llm", "total"]:
            ratio = hfm[stage] / base[stage] if base[stage] > 0 else float("nan")
            print(f"{stage:<11} {hfm[stage]:>12.1f} {base[stage]:>10.1f} {ratio:>6.2f}x")
        print(f"{'keep':<6} {'zr vision':>10} {'zr llm':>9} {'zr total':>9} {'vs keep ' + str(keeps[0]):>13} "
              f"{'vs transformers':>16}")
        for k in keeps:
            z = zrm[k]
            print(f"{k:<6.2f} {z['vision']:>10.1f} {z['llm']:>9.1f} {z['total']:>9.1f} "
                  f"{base['total'] / z['total']:>12.2f}x {hfm['total'] / z['total']:>15.2f}x")
    print(f"\nratio = transformers ms / ziprerank ms (above 1: ziprerank faster); "
          f"wall {time.time() - start:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
