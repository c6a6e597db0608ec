#!/usr/bin/env python3
"""Builds the transformers parity fixture for ziprerank's Qwen3-VL engine.

Run on a machine with PyTorch and transformers >= 4.57 (no GPU needed; a GPU is fine):

    python3 scripts/make_parity_fixture.py tests/fixtures/parity

It builds a tiny random Qwen3-VL with transformers' own classes, saves it as a model folder
(config.json, model.safetensors, preprocessor_config.json and a byte-level tokenizer.json), runs two
generated page images through transformers' image processor and the model, and stores what the C++
test compares against: the processor's pixel_values and grids, the vision tower's merged tokens and
DeepStack features, the 3-row M-RoPE position ids, and the final logits (float32, CPU, eager
attention). Tensors go to parity_tensors.safetensors, token ids and metadata to parity.json.
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

# Byte-level vocabulary (GPT-2 byte order) followed by the chat/vision special tokens.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]


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
    added = [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
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
        json.dump(tok, f)


def encode_bytes(text):
    _, order = byte_order()
    index = {b: i for i, b in enumerate(order)}
    return [index[b] for b in text.encode("utf-8")]


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    ids = {s: 256 + i for i, s in enumerate(SPECIALS)}
    rope = {"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True}
    major = int(transformers.__version__.split(".")[0])
    text = dict(vocab_size=263, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
                max_position_embeddings=4096, tie_word_embeddings=False,
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"])
    if major >= 5:
        text["rope_parameters"] = dict(rope, rope_theta=5000000.0)
    else:
        text["rope_scaling"] = rope
        text["rope_theta"] = 5000000.0
    vision = dict(depth=3, hidden_size=64, intermediate_size=128, num_heads=4, in_channels=3, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                  num_position_embeddings=64, deepstack_visual_indexes=[0, 2])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    config._attn_implementation = "eager"
    model = Qwen3VLForConditionalGeneration(config).eval().float()
    with torch.no_grad():  # larger than the default init so that differences would show
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.08)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_tokenizer(os.path.join(out_dir, "tokenizer.json"))

    try:
        from transformers import Qwen2VLImageProcessorFast as Processor
    except ImportError:
        from transformers import Qwen2VLImageProcessor as Processor
    processor = Processor(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3,
                          image_std=[0.5] * 3, size={"shortest_edge": 64 * 64, "longest_edge": 160 * 160})
    processor.save_pretrained(out_dir)

    rng = np.random.default_rng(1)
    images = []
    for i, (h, w) in enumerate([(90, 130), (150, 70)]):
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 3) % 256], -1).astype(np.int32)
        img += rng.integers(-20, 21, size=img.shape)
        img = np.clip(img, 0, 255).astype(np.uint8)
        images.append(img)
        from PIL import Image
        Image.fromarray(img).save(os.path.join(out_dir, f"image{i}.png"))
    from PIL import Image
    pil = [Image.open(os.path.join(out_dir, f"image{i}.png")).convert("RGB") for i in range(2)]
    proc = processor(images=pil, return_tensors="pt")
    pixel_values, grid = proc["pixel_values"].float(), proc["image_grid_thw"]

    merge = 4
    seq = [ids["<|im_start|>"]] + encode_bytes("user\nSearch Query: parity test")
    for g in grid.tolist():
        seq += [ids["<|vision_start|>"]] + [ids["<|image_pad|>"]] * (g[0] * g[1] * g[2] // merge) + [ids["<|vision_end|>"]]
    seq += [ids["<|im_end|>"]] + encode_bytes("\n") + [ids["<|im_start|>"]] + encode_bytes("assistant\n[")
    input_ids = torch.tensor([seq])

    with torch.no_grad():
        embeds, deepstack = model.model.get_image_features(pixel_values, grid)
        position_ids, _ = model.model.get_rope_index(input_ids, grid, None, torch.ones_like(input_ids))
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=pixel_values,
                    image_grid_thw=grid)
    tensors = {"pixel_values": pixel_values.contiguous(),
               "image_embeds": torch.cat(list(embeds), 0).float().contiguous(),
               "position_ids": position_ids[:, 0].float().contiguous(),
               "logits": out.logits[0].float().contiguous()}
    for i, d in enumerate(deepstack):
        tensors[f"deepstack.{i}"] = d.float().contiguous()
    save_file(tensors, os.path.join(out_dir, "parity_tensors.safetensors"))
    letters = encode_bytes("ABCDEFGHIJ")
    meta = {"input_ids": seq, "grid_thw": grid.tolist(), "letter_ids": letters,
            "transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "attention": "eager", "dtype": "float32"}
    with open(os.path.join(out_dir, "parity.json"), "w") as f:
        json.dump(meta, f)
    print(f"wrote the parity fixture to {out_dir} (transformers {transformers.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity")
