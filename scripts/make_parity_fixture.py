#!/usr/bin/env python3
"""Builds the transformers parity fixture for ziprerank's Qwen3-VL engine.

Runs in the reference environment that scripts/reference_env.sh makes (PyTorch 2.13 CPU,
transformers 4.57.6, torchvision 0.28):

    python scripts/make_parity_fixture.py tests/fixtures/parity           # write the fixture
    python scripts/make_parity_fixture.py --check tests/fixtures/parity   # regenerate and compare

The fixture holds two tiny random Qwen3-VL model folders saved by transformers' own classes
(config.json, model.safetensors, preprocessor_config.json and a byte-level tokenizer.json), a set
of generated images, and transformers' outputs (float32, CPU, eager attention):

  * the fast image processor's resized pixels for every image under each model's processor
    (stored as the uint8 levels of the first temporal frame; pixel_values are exactly
    (level - 127.5) / 127.5 repeated over the temporal frames, which this script asserts) and
    image_grid_thw;
  * the vision tower's merged tokens and DeepStack features for all images at once;
  * per ranking prompt (1, 3 and 5 candidates): the token ids, the 3-row M-RoPE position ids, the
    final-normed hidden states at every position and the logits at the trailing "[";
  * the largest difference between transformers' own eager and sdpa attention on the same inputs.

Tensors go to parity_tensors.safetensors, ids and metadata to parity.json. With --check the
fixture is made again in a temporary folder and compared with the given one: ids, grids,
configuration and image pixels exactly, tensors and weights within 1e-6; the exit status is 1 on
any difference.
"""
import argparse
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import warnings


def _load_torchvision(torch):
    """Imports torchvision even when its C++ operators cannot load (PyPI's Linux torchvision is
    built for CUDA torch; next to a CPU torch its library misses libtorch_cuda). The image
    transforms used here are pure Python over torch; only the detection operators need the
    library, and torchvision's import registers fake kernels for two of them, which fails unless
    the operators exist. Declaring their schemas first lets the import finish."""
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise SystemExit("torchvision is required (transformers' fast Qwen2-VL image processor)")
    libs = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so"))
    try:
        torch.ops.load_library(libs[0])
        return
    except (IndexError, OSError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _load_torchvision.keep = lib  # the definitions live as long as the Library object


# The same numbers on every x86-64 host: ATen's portable kernels instead of the AVX2/AVX-512 ones,
# MKL's and oneDNN's CPU-independent code paths, one thread. (Otherwise float32 results move by
# ~2e-6 between hosts with different vector units, more than a regeneration check allows.)
os.environ.update(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE", ONEDNN_MAX_CPU_ISA="SSE41",
                  OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

_load_torchvision(torch)
import torchvision  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (PreTrainedTokenizerFast, Qwen2VLImageProcessorFast,  # noqa: E402
                          Qwen3VLConfig, Qwen3VLForConditionalGeneration)

# Byte-level vocabulary (GPT-2 byte order) followed by the chat/vision special tokens.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
IDS = {s: 256 + i for i, s in enumerate(SPECIALS)}
VOCAB = 256 + len(SPECIALS)

# Two architectures. "deepstack3": odd head counts everywhere (3 vision heads, 3 query heads over
# 1 key/value head), DeepStack from three vision layers injected after text layers 0, 1, 2, an
# uneven M-RoPE section. "bias_tied": patch 8, query/key/value/output biases, tied embeddings,
# DeepStack from one layer, no grouped-query sharing with an odd head count (5).
MODELS = {
    "deepstack3": dict(
        vision=dict(depth=4, hidden_size=24, intermediate_size=48, num_heads=3, patch_size=16,
                    out_hidden_size=32, num_position_embeddings=36, deepstack_visual_indexes=[0, 1, 3]),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=3,
                  num_key_value_heads=1, head_dim=24, mrope_section=[5, 4, 3], attention_bias=False),
        tie=False,
        processor=dict(min_pixels=64 * 64, max_pixels=128 * 128)),
    "bias_tied": dict(
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8,
                    out_hidden_size=40, num_position_embeddings=64, deepstack_visual_indexes=[1]),
        text=dict(hidden_size=40, intermediate_size=64, num_hidden_layers=2, num_attention_heads=5,
                  num_key_value_heads=5, head_dim=8, mrope_section=[2, 1, 1], attention_bias=True),
        tie=True,
        processor=dict(min_pixels=32 * 32, max_pixels=64 * 64)),
}

# Generated images: (name, width, height, mode, what it exercises). Sizes are chosen for the
# "deepstack3" processor (factor 32, min 64x64, max 128x128 pixels).
IMAGES = [
    ("landscape", 150, 100, "RGB", "wider than tall, within the pixel range"),
    ("portrait", 70, 130, "RGB", "taller than wide, within the pixel range"),
    ("tiny", 30, 20, "RGB", "below min_pixels: the upscaling branch"),
    ("huge", 520, 390, "RGB", "above max_pixels: the downscaling branch"),
    ("sliver", 40, 700, "RGB", "above max_pixels with the narrow side clamped to the factor"),
    ("halves", 80, 208, "RGB", "sides at 2.5 and 6.5 factors: round half to even"),
    ("rgba", 61, 45, "RGBA", "alpha channel dropped by convert('RGB'); upscaled"),
    # Files that decoders disagree on, opened as the reference opens pages: PIL's Image.open and
    # convert("RGB"), without EXIF transposition.
    ("palette", 57, 43, "P", "palette PNG with a transparency table: palette colours, alpha dropped"),
    ("rgb16", 52, 70, "RGB;16", "16-bit RGB PNG: PIL keeps each sample's high byte"),
    ("gray16", 66, 48, "I;16", "16-bit grayscale PNG: PIL opens it as I;16, convert clips at 255"),
    ("gray", 48, 66, "L", "8-bit grayscale PNG: gray replicated to RGB"),
    ("cmyk", 60, 44, "CMYK", "CMYK JPEG (Adobe marker): PIL's CMYK to RGB conversion"),
    ("exif", 72, 40, "EXIF6", "JPEG with EXIF orientation 6: not rotated (Image.open ignores it)"),
]
JPEG_MODES = ("CMYK", "EXIF6")


def image_file(name, mode):
    return f"{name}.jpg" if mode in JPEG_MODES else f"{name}.png"

QUERY = "parity test"
# Ranking prompts: candidates by image name, in order.
CASES = [
    ("n1", ["landscape"]),
    ("n3", ["portrait", "tiny", "rgba"]),
    ("n5", ["halves", "landscape", "tiny", "portrait", "sliver"]),
    # 10 and 20 candidates: every image, then repeated (M-RoPE positions with 20 images).
    ("n10", [IMAGES[i % len(IMAGES)][0] for i in range(3, 13)]),
    ("n20", [IMAGES[(5 * i) % len(IMAGES)][0] for i in range(20)]),
]


def byte_order():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs], bs


def write_tokenizer(path):
    chars, _ = byte_order()
    vocab = {c: i for i, c in enumerate(chars)}
    added = [{"id": IDS[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s in SPECIALS]
    split = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                     "ignore_merges": False, "vocab": vocab, "merges": []}}
    with open(path, "w") as f:
        json.dump(tok, f, indent=1)


def make_image(name, width, height, mode, seed):
    """Smooth gradients, hard-edged shapes and a noisy patch: content where the resampling
    filters differ, yet small as PNG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    r = x * 255 // max(width - 1, 1)
    g = y * 255 // max(height - 1, 1)
    b = np.where(((x // 7) + (y // 5)) % 2 == 0, 230, 25)
    cy, cx, rad = height * 0.4, width * 0.6, min(width, height) * 0.3
    disc = (y - cy) ** 2 + (x - cx) ** 2 < rad ** 2
    img = np.stack([r, g, b], -1)
    img[disc] = [250, 240, 10]
    ph, pw = min(height, 24), min(width, 24)
    img[:ph, :pw] = rng.integers(0, 256, size=(ph, pw, 3))
    img = img.clip(0, 255).astype(np.uint8)
    if mode == "RGBA":
        alpha = (x * 255 // max(width - 1, 1)).astype(np.uint8)
        img = np.concatenate([img, alpha[..., None]], -1)
    return Image.fromarray(img, mode)


def write_png16_rgb(path, rgb16):
    """A 16-bit RGB PNG, written by hand (PIL cannot save one)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_image(path, name, width, height, mode, seed):
    """Saves one generated image in the file format and mode named."""
    rng = np.random.default_rng(seed + 1000)
    if mode in ("RGB", "RGBA"):
        make_image(name, width, height, mode, seed).save(path)
        return
    base = np.asarray(make_image(name, width, height, "RGB", seed))
    if mode == "P":
        img = Image.fromarray(base, "RGB").quantize(colors=24, method=Image.Quantize.MEDIANCUT)
        alpha = bytes(int(a) for a in rng.integers(0, 256, size=24))
        with warnings.catch_warnings():  # PIL suggests RGBA for such files; this one is on purpose
            warnings.simplefilter("ignore")
            img.save(path, transparency=alpha)
    elif mode == "RGB;16":  # high byte = the 8-bit image, low byte noise (rounding would differ)
        low = rng.integers(0, 256, size=base.shape)
        write_png16_rgb(path, base.astype(np.uint16) * 256 + low.astype(np.uint16))
    elif mode == "I;16":  # gray from 0 to 600: part below 255, part clipped
        y, x = np.mgrid[0:height, 0:width]
        gray = (x * 600 // max(width - 1, 1) + base[..., 1].astype(np.int64) // 8).astype(np.uint16)
        Image.fromarray(gray.astype("<u2")).save(path)  # mode I;16
    elif mode == "L":
        Image.fromarray(base, "RGB").convert("L").save(path)
    elif mode == "CMYK":
        k = rng.integers(0, 120, size=base.shape[:2] + (1,))
        cmyk = np.concatenate([255 - base, k], -1).astype(np.uint8)
        Image.fromarray(cmyk, "CMYK").save(path, quality=92)
    elif mode == "EXIF6":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        Image.fromarray(base, "RGB").save(path, quality=92, exif=exif.tobytes())
    else:
        raise ValueError(mode)


def ranking_text(n):
    pictures = ", ".join(f"Picture {i + 1} is passage [{chr(65 + i)}]" for i in range(n))
    prompt = "\n".join([
        "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.",
        "",
        f"I will provide you with {n} passages as images.",
        "Rank the passages based on their relevance to the search query.",
        "",
        f"The images are provided in order: {pictures}.",
        "",
        f"Search Query: {QUERY}",
        "",
        "Rank the passages above based on their relevance to the search query.",
        "The passages should be listed in descending order using identifiers.",
        "The most relevant passages should be listed first.",
        "The output format should be [A] > [B], etc.",
        "Only output the ranking results, do not say anything else."])
    images = "<|vision_start|><|image_pad|><|vision_end|>" * n
    return f"<|im_start|>user\n{prompt}{images}<|im_end|>\n<|im_start|>assistant\n"


def expand_image_pads(ids, grids, merge):
    """What Qwen3VLProcessor does to the text: each <|image_pad|> becomes t*h*w/merge^2 pads."""
    out, index = [], 0
    for t in ids:
        if t == IDS["<|image_pad|>"]:
            out += [t] * (int(np.prod(grids[index])) // (merge * merge))
            index += 1
        else:
            out.append(t)
    assert index == len(grids)
    return out


def build_model(name, spec, out_dir):
    torch.manual_seed(1000 + sorted(MODELS).index(name))
    v, t = spec["vision"], spec["text"]
    text = dict(vocab_size=VOCAB, hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
                num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
                num_key_value_heads=t["num_key_value_heads"], head_dim=t["head_dim"], rms_norm_eps=1e-6,
                max_position_embeddings=4096, attention_bias=t["attention_bias"],
                tie_word_embeddings=spec["tie"], bos_token_id=IDS["<|endoftext|>"],
                eos_token_id=IDS["<|im_end|>"], rope_theta=5000000.0,
                rope_scaling={"rope_type": "default", "mrope_section": t["mrope_section"],
                              "mrope_interleaved": True})
    vision = dict(depth=v["depth"], hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
                  num_heads=v["num_heads"], in_channels=3, patch_size=v["patch_size"], spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=v["out_hidden_size"],
                  num_position_embeddings=v["num_position_embeddings"],
                  deepstack_visual_indexes=v["deepstack_visual_indexes"])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=IDS["<|image_pad|>"],
                           video_token_id=IDS["<|video_pad|>"], vision_start_token_id=IDS["<|vision_start|>"],
                           vision_end_token_id=IDS["<|vision_end|>"], tie_word_embeddings=spec["tie"])
    model = Qwen3VLForConditionalGeneration(config).eval().float()
    with torch.no_grad():  # larger than the default init, and no all-ones norms or zero biases
        for pname, p in sorted(model.named_parameters()):
            if p.dim() >= 2:
                p.normal_(0.0, 0.08)
            elif "norm" in pname:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.05)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_tokenizer(os.path.join(out_dir, "tokenizer.json"))
    p = v["patch_size"]
    processor = Qwen2VLImageProcessorFast(
        patch_size=p, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": spec["processor"]["min_pixels"], "longest_edge": spec["processor"]["max_pixels"]})
    processor.save_pretrained(out_dir)


DEVICE = torch.device("cpu")


def load_reference(model_dir, attention, dtype=torch.float32):
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_dir, dtype=dtype,
                                                            attn_implementation=attention)
    return model.eval().to(DEVICE)


def run_model(model, pixel_values, grids, cases):
    """Vision features for all images, and per prompt: positions, hidden states, last logits."""
    grid = torch.tensor(grids, device=DEVICE)
    out = {}
    with torch.no_grad():
        embeds, deepstack = model.model.get_image_features(pixel_values.to(DEVICE), grid)
        out["vision.embeds"] = torch.cat(list(embeds), 0)
        for k, d in enumerate(deepstack):
            out[f"vision.deepstack.{k}"] = d
        captured = {}
        hook = model.model.language_model.norm.register_forward_hook(
            lambda _m, _i, o: captured.__setitem__("hidden", o))
        for case in cases:
            ids = torch.tensor([case["input_ids"]], device=DEVICE)
            g = torch.tensor(case["grid_thw"], device=DEVICE)
            px = case["pixel_values"].to(DEVICE)
            mask = torch.ones_like(ids)
            position_ids, _ = model.model.get_rope_index(ids, g, None, mask)
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=px, image_grid_thw=g).logits[0]
            name = case["name"]
            out[f"{name}.position_ids"] = position_ids[:, 0].float()
            out[f"{name}.hidden"] = captured["hidden"][0]
            out[f"{name}.logits_last"] = logits[-1]
        hook.remove()
    return {k: v.float().cpu().contiguous() for k, v in out.items()}


def dump_json(obj):
    """Indented JSON with every list of numbers on one line."""
    text = json.dumps(obj, indent=1)
    flat = re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    return flat + "\n"


def max_abs_diff(a, b):
    return float((a - b).abs().max())


def tensor_diffs(a, b):
    """Per tensor (positions aside): [max |a - b|, root mean square of a - b], 3 digits each."""
    return {k: [float(f"{max_abs_diff(a[k], b[k]):.3g}"),
                float(f"{float((a[k] - b[k]).double().pow(2).mean().sqrt()):.3g}")]
            for k in sorted(a) if not k.endswith("position_ids")}


def stage_diffs(a, b):
    """Largest |a - b| per stage (vision.embeds, vision.deepstack, hidden, logits_last), over
    every image or prompt, to 3 significant digits."""
    diffs = {}
    for k in a:
        stage = "vision.deepstack" if k.startswith("vision.deepstack.") else \
            k if k.startswith("vision.") else k.split(".", 1)[1]
        if stage != "position_ids":
            diffs[stage] = max(diffs.get(stage, 0.0), max_abs_diff(a[k], b[k]))
    return {k: float(f"{v:.3g}") for k, v in sorted(diffs.items())}


def generate(out_dir):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    for i, (name, w, h, mode, _) in enumerate(IMAGES):
        write_image(os.path.join(images_dir, image_file(name, mode)), name, w, h, mode, seed=i + 1)
    pil = {name: Image.open(os.path.join(images_dir, image_file(name, mode))).convert("RGB")
           for name, _, _, mode, _ in IMAGES}
    names = [name for name, *_ in IMAGES]
    meta_file = {name: f"images/{image_file(name, mode)}" for name, _, _, mode, _ in IMAGES}

    tensors = {}
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__, "attention": "eager", "dtype": "float32",
            "device": str(DEVICE),
            "query": QUERY,
            "images": [{"name": n, "file": f"images/{image_file(n, m)}", "width": w, "height": h, "mode": m,
                        "what": what}
                       for n, w, h, m, what in IMAGES],
            "models": {}, "eager_vs_sdpa": {}, "bf16_vs_float32": {}}
    for mname, spec in MODELS.items():
        mdir = os.path.join(out_dir, mname)
        build_model(mname, spec, mdir)
        processor = Qwen2VLImageProcessorFast.from_pretrained(mdir)
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(mdir, "tokenizer.json"))
        p, merge = processor.patch_size, processor.merge_size

        # Image processor: each image alone, as the ranking pipeline preprocesses each page.
        pixel_values, grids, per_image = {}, {}, []
        for n in names:
            proc = processor(images=[pil[n]], return_tensors="pt")
            pv, g = proc["pixel_values"], proc["image_grid_thw"][0].tolist()
            rows = pv.shape[0]
            frames = pv.view(rows, 3, 2, p, p)
            levels = torch.round(frames[:, :, 0] * 127.5 + 127.5)
            rebuilt = ((levels - 127.5) / 127.5)[:, :, None].expand(rows, 3, 2, p, p).reshape(rows, -1)
            if not torch.equal(rebuilt, pv) or levels.min() < 0 or levels.max() > 255:
                raise SystemExit(f"{mname}/{n}: pixel_values are not (level - 127.5) / 127.5 of uint8 levels")
            tensors[f"{mname}.levels.{n}"] = levels.to(torch.float16).contiguous()  # exact for 0..255
            pixel_values[n], grids[n] = pv, g
            per_image.append({"name": n, "file": meta_file[n], "grid_thw": g,
                              "tokens": g[0] * g[1] * g[2] // (merge * merge)})

        cases = []
        for cname, cimages in CASES:
            text = ranking_text(len(cimages))
            raw = tokenizer.encode(text, add_special_tokens=False)
            cgrids = [grids[n] for n in cimages]
            ids = expand_image_pads(raw, cgrids, merge) + tokenizer.encode("[", add_special_tokens=False)
            letters = [tokenizer.encode(chr(65 + i), add_special_tokens=False)[0] for i in range(len(cimages))]
            cases.append({"name": cname, "images": cimages, "input_ids": ids, "grid_thw": cgrids,
                          "identifier_ids": letters,
                          "pixel_values": torch.cat([pixel_values[n] for n in cimages], 0)})

        all_px = torch.cat([pixel_values[n] for n in names], 0)
        all_grids = [grids[n] for n in names]
        eager = run_model(load_reference(mdir, "eager"), all_px, all_grids, cases)
        sdpa = run_model(load_reference(mdir, "sdpa"), all_px, all_grids, cases)
        for k, v in eager.items():
            tensors[f"{mname}.{k}"] = v
        meta["eager_vs_sdpa"][mname] = stage_diffs(eager, sdpa)
        # transformers' own bfloat16 error: the model in bfloat16 (eager and sdpa) against the
        # float32 reference above, per stage; ziprerank in bfloat16 must not be further off.
        meta["bf16_vs_float32"][mname] = {
            attn: tensor_diffs(eager, run_model(load_reference(mdir, attn, torch.bfloat16), all_px,
                                                all_grids, cases))
            for attn in ("eager", "sdpa")}
        meta["models"][mname] = {
            "dir": mname, "processor_images": per_image, "vision_images": names,
            "cases": [{k: c[k] for k in ("name", "images", "input_ids", "grid_thw", "identifier_ids")}
                      for c in cases]}
        print(f"{mname}: {len(cases)} prompts, {sum(len(c['input_ids']) for c in cases)} tokens; "
              f"eager vs sdpa {meta['eager_vs_sdpa'][mname]}", file=sys.stderr)

    save_file(tensors, os.path.join(out_dir, "parity_tensors.safetensors"))
    with open(os.path.join(out_dir, "parity.json"), "w") as f:
        f.write(dump_json(meta))


def compare(fresh, committed):
    """Differences between a regenerated fixture and the committed one, one line each."""
    problems = []
    a = load_file(os.path.join(fresh, "parity_tensors.safetensors"))
    b = load_file(os.path.join(committed, "parity_tensors.safetensors"))
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            problems.append(f"tensor {k}: only in {'the regenerated' if k in a else 'the committed'} fixture")
        elif a[k].shape != b[k].shape:
            problems.append(f"tensor {k}: shape {list(a[k].shape)} vs {list(b[k].shape)}")
        elif (d := max_abs_diff(a[k].float(), b[k].float())) > 1e-6:
            problems.append(f"tensor {k}: max |diff| {d:.3g}")
    for mname in MODELS:
        wa = load_file(os.path.join(fresh, mname, "model.safetensors"))
        wb = load_file(os.path.join(committed, mname, "model.safetensors"))
        if sorted(wa) != sorted(wb):
            problems.append(f"{mname}/model.safetensors: tensor names differ")
        else:
            for k in sorted(wa):
                if wa[k].shape != wb[k].shape or max_abs_diff(wa[k], wb[k]) > 1e-6:
                    problems.append(f"{mname}/model.safetensors: {k} differs")
        for f in ("config.json", "preprocessor_config.json", "tokenizer.json"):
            ja = json.load(open(os.path.join(fresh, mname, f)))
            jb = json.load(open(os.path.join(committed, mname, f)))
            for j in (ja, jb):
                j.pop("transformers_version", None)
            if ja != jb:
                problems.append(f"{mname}/{f} differs")
    ma = json.load(open(os.path.join(fresh, "parity.json")))
    mb = json.load(open(os.path.join(committed, "parity.json")))
    for key in ("images", "models", "query", "attention", "dtype"):
        if ma.get(key) != mb.get(key):
            problems.append(f"parity.json: '{key}' differs")
    for name, _, _, mode, _ in IMAGES:
        ia = np.asarray(Image.open(os.path.join(fresh, "images", image_file(name, mode))))
        ib = np.asarray(Image.open(os.path.join(committed, "images", image_file(name, mode))))
        if ia.shape != ib.shape or not np.array_equal(ia, ib):
            problems.append(f"images/{name}.png: pixels differ")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default="tests/fixtures/parity")
    ap.add_argument("--device", default="cpu",
                    help="where transformers runs (cuda: scripts/gpu/parity_check.sh); the committed "
                         "fixture is made on cpu")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with DIR instead of writing DIR")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":  # float32 as float32: no TensorFloat-32 products or convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if not args.check:
        for mname in MODELS:  # a stale model folder must not survive a regeneration
            shutil.rmtree(os.path.join(args.dir, mname), ignore_errors=True)
        generate(args.dir)
        print(f"wrote the parity fixture to {args.dir} (transformers {transformers.__version__}, "
              f"torch {torch.__version__})", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        problems = compare(tmp, args.dir)
    if problems:
        print(f"the parity fixture in {args.dir} differs from a regeneration:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"the parity fixture in {args.dir} matches a regeneration", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
