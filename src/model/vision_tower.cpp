#include "model/vision_tower.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>

#include "model/kernels.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

using detail::LayerNorm;
using detail::Linear;

VisionTower::VisionTower(const VisionConfig& c, StateDict sd, detail::ParamList& params)
    : config_(c) {
  const int64_t H = c.hidden_size;
  const int64_t merged = H * c.spatial_merge_size * c.spatial_merge_size;
  patch_kernel_ =
      detail::take(sd, "patch_embed.proj.weight",
                   {H, c.in_channels, c.temporal_patch_size, c.patch_size, c.patch_size}, params);
  patch_bias_ = detail::take(sd, "patch_embed.proj.bias", {H}, params);
  if (sd.options().bf16_products && !sd.options().writable && patch_kernel_.defined() &&
      patch_kernel_.scalar_type() == at::kFloat) {
    const int64_t T = c.temporal_patch_size, PP = c.patch_size * c.patch_size;
    patch_matrix_bf16_ = patch_kernel_.reshape({H, -1}).to(at::kBFloat16);
    still_matrix_bf16_ = patch_kernel_.reshape({H, c.in_channels, T, PP})
                             .sum(2)
                             .reshape({H, c.in_channels * PP})
                             .to(at::kBFloat16);
  }
  pos_embed_ = detail::take(sd, "pos_embed.weight", {c.num_position_embeddings, H}, params);
  for (int i = 0; i < c.depth; ++i) {
    StateDict b = sd.select("blocks." + std::to_string(i) + ".");
    Block blk;
    blk.norm1 = LayerNorm(b, "norm1", H, 1e-6, params);
    blk.norm2 = LayerNorm(b, "norm2", H, 1e-6, params);
    blk.qkv = Linear(b, "attn.qkv", H, 3 * H, true, params);
    blk.proj = Linear(b, "attn.proj", H, H, true, params);
    blk.fc1 = Linear(b, "mlp.linear_fc1", H, c.intermediate_size, true, params);
    blk.fc2 = Linear(b, "mlp.linear_fc2", c.intermediate_size, H, true, params);
    blocks_.push_back(std::move(blk));
  }
  auto make_merger = [&](StateDict m, bool postshuffle) {
    Merger mg;
    mg.postshuffle = postshuffle;
    mg.merged_dim = merged;
    mg.norm = LayerNorm(m, "norm", postshuffle ? merged : H, 1e-6, params);
    mg.fc1 = Linear(m, "linear_fc1", merged, merged, true, params);
    mg.fc2 = Linear(m, "linear_fc2", merged, c.out_hidden_size, true, params);
    return mg;
  };
  merger_ = make_merger(sd.select("merger."), false);
  for (size_t i = 0; i < c.deepstack_visual_indexes.size(); ++i) {
    deepstack_.push_back(
        make_merger(sd.select("deepstack_merger_list." + std::to_string(i) + "."), true));
  }
  // 2D rotary: a quarter of the head for rows and a quarter for columns, then duplicated.
  const int64_t dim = c.head_dim() / 2;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  inv_freq_ = 1.0 / at::pow(10000.0, at::arange(0, dim, 2, f32) / static_cast<double>(dim));
}

at::Tensor VisionTower::Merger::operator()(const at::Tensor& x) const {
  at::Tensor h =
      postshuffle ? norm(x.reshape({-1, merged_dim})) : norm(x).reshape({-1, merged_dim});
  return fc2(at::gelu(fc1(h)));
}

at::Tensor VisionTower::position_embeddings(const std::vector<ImageGrid>& grids) const {
  // Bilinear interpolation of the learned side x side grid to each image's patch grid, then
  // reordered into 2x2 merge-window order.
  const int64_t side = config_.position_grid_side();
  const int64_t m = config_.spatial_merge_size;
  const auto dev = pos_embed_.device();
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  std::vector<at::Tensor> out;
  for (const ImageGrid& g : grids) {
    const at::Tensor hi = at::linspace(0, static_cast<double>(side - 1), g.h, f32);
    const at::Tensor wi = at::linspace(0, static_cast<double>(side - 1), g.w, f32);
    const at::Tensor hf = hi.to(at::kInt), wf = wi.to(at::kInt);  // truncation, as .int()
    const at::Tensor hc = (hf + 1).clamp_max(side - 1), wc = (wf + 1).clamp_max(side - 1);
    const at::Tensor dh = hi - hf, dw = wi - wf;
    const at::Tensor bh = (hf * side).to(at::kLong), bhc = (hc * side).to(at::kLong);
    const at::Tensor wfl = wf.to(at::kLong), wcl = wc.to(at::kLong);
    const at::Tensor idx[4] = {(bh.unsqueeze(1) + wfl.unsqueeze(0)).flatten(),
                               (bh.unsqueeze(1) + wcl.unsqueeze(0)).flatten(),
                               (bhc.unsqueeze(1) + wfl.unsqueeze(0)).flatten(),
                               (bhc.unsqueeze(1) + wcl.unsqueeze(0)).flatten()};
    const at::Tensor wts[4] = {((1 - dh).unsqueeze(1) * (1 - dw).unsqueeze(0)).flatten(),
                               ((1 - dh).unsqueeze(1) * dw.unsqueeze(0)).flatten(),
                               (dh.unsqueeze(1) * (1 - dw).unsqueeze(0)).flatten(),
                               (dh.unsqueeze(1) * dw.unsqueeze(0)).flatten()};
    at::Tensor sum;
    for (int i = 0; i < 4; ++i) {
      const at::Tensor term = pos_embed_.index_select(0, idx[i].to(dev)) *
                              wts[i].to(dev, pos_embed_.scalar_type()).unsqueeze(1);
      sum = i == 0 ? term : sum + term;
    }
    const int64_t D = pos_embed_.size(1);
    at::Tensor pe = sum.repeat({g.t, 1})
                        .view({g.t, g.h / m, m, g.w / m, m, D})
                        .permute({0, 1, 3, 2, 4, 5})
                        .reshape({-1, D});
    out.push_back(pe);
  }
  return at::cat(out, 0);
}

std::pair<at::Tensor, at::Tensor> VisionTower::rotary(const std::vector<ImageGrid>& grids) const {
  const int64_t m = config_.spatial_merge_size;
  int64_t max_hw = 0;
  for (const auto& g : grids) max_hw = std::max({max_hw, g.h, g.w});
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor table = at::outer(at::arange(max_hw, f32), inv_freq_);  // [max_hw, dim/2]
  std::vector<at::Tensor> rows, cols;
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  for (const ImageGrid& g : grids) {
    const int64_t mh = g.h / m, mw = g.w / m;
    const at::Tensor r =
        (at::arange(mh, i64).view({mh, 1, 1, 1}) * m + at::arange(m, i64).view({1, 1, m, 1}))
            .expand({mh, mw, m, m})
            .reshape({-1});
    const at::Tensor c =
        (at::arange(mw, i64).view({1, mw, 1, 1}) * m + at::arange(m, i64).view({1, 1, 1, m}))
            .expand({mh, mw, m, m})
            .reshape({-1});
    rows.push_back(r.repeat({g.t}));
    cols.push_back(c.repeat({g.t}));
  }
  const at::Tensor emb_half =
      at::cat({table.index_select(0, at::cat(rows)), table.index_select(0, at::cat(cols))}, 1);
  const at::Tensor emb = at::cat({emb_half, emb_half}, 1).to(pos_embed_.device());
  return {emb.cos(), emb.sin()};
}

at::Tensor VisionTower::block_forward(const Block& b, const at::Tensor& x, const at::Tensor& cos,
                                      const at::Tensor& sin,
                                      const std::vector<int64_t>& lengths) const {
  // Every step but attention is row-wise and attention never crosses images (or tiles), so the
  // block runs on groups of whole images of about kRows rows: intermediates (the MLP's 4x wide
  // one above all) stay small enough for the cache and for the heap's reuse, instead of being
  // fresh page-faulted memory per operation, as whole-window tensors of tens of MiB are.
  constexpr int64_t kRows = 2048;
  std::vector<at::Tensor> outs;
  int64_t offset = 0;
  for (size_t first = 0; first < lengths.size();) {
    size_t last = first;
    int64_t rows = lengths[first];
    while (last + 1 < lengths.size() && rows + lengths[last + 1] <= kRows) rows += lengths[++last];
    const std::vector<int64_t> group(lengths.begin() + static_cast<std::ptrdiff_t>(first),
                                     lengths.begin() + static_cast<std::ptrdiff_t>(last) + 1);
    outs.push_back(block_rows(b, x.narrow(0, offset, rows), cos.narrow(0, offset, rows),
                              sin.narrow(0, offset, rows), group));
    offset += rows;
    first = last + 1;
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 0);
}

at::Tensor VisionTower::mlp_hidden(const Block& b, const at::Tensor& x) const {
  const bool bf16 = b.fc1.weight.scalar_type() == at::kBFloat16;
  const bool fused =
      config_.hidden_act == "gelu_pytorch_tanh" && x.is_cpu() &&
      (x.scalar_type() == at::kFloat || (bf16 && x.scalar_type() == at::kBFloat16)) &&
      !b.fc1.weight.requires_grad() &&
      (!b.fc1.bias.defined() || b.fc1.bias.scalar_type() == at::kFloat);
  if (!fused) return detail::activation(b.fc1(x), config_.hidden_act);
  // One pass adds the bias and applies the activation, reading the product as it comes (bfloat16
  // with bf16 products) and writing what fc2 reads: in place of a cast, a bias add and the
  // activation's five passes.
  const at::Tensor y = at::linear(bf16 ? x.to(at::kBFloat16) : x, b.fc1.weight).contiguous();
  at::Tensor out = at::empty_like(y);
  const float* bias = b.fc1.bias.defined() ? b.fc1.bias.contiguous().data_ptr<float>() : nullptr;
  const int64_t cols = y.size(-1), rows = y.numel() / std::max<int64_t>(1, cols);
  if (bf16) {
    detail::gelu_tanh_bias(reinterpret_cast<const uint16_t*>(y.data_ptr<at::BFloat16>()), bias,
                           reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()), rows, cols);
  } else {
    detail::gelu_tanh_bias(y.data_ptr<float>(), bias, out.data_ptr<float>(), rows, cols);
  }
  return out;
}

std::array<at::Tensor, 3> VisionTower::split_rotate(const Block& b, const at::Tensor& qkv,
                                                    const at::Tensor& cos, const at::Tensor& sin,
                                                    const std::vector<int64_t>& lengths,
                                                    double scale) const {
  // One pass in place of the slices, products, concatenations, casts and transposes of the
  // autograd path: each row's rotated (and, for queries, scaled) heads are written straight into
  // [image][head][row][dim] order, what batched attention reads.
  const int64_t S = qkv.size(0), heads = config_.num_heads, hd = config_.head_dim();
  const at::Tensor c = cos.to(at::kFloat).contiguous(), s = sin.to(at::kFloat).contiguous();
  detail::RotarySplit rs;
  const at::Tensor bias =
      b.qkv.bias.defined() ? b.qkv.bias.to(at::kFloat).contiguous() : at::Tensor();
  rs.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  rs.cos = c.data_ptr<float>();
  rs.sin = s.data_ptr<float>();
  rs.lengths = lengths.data();
  rs.images = static_cast<int64_t>(lengths.size());
  rs.heads = heads;
  rs.head_dim = hd;
  rs.scale = static_cast<float>(scale);
  const at::Tensor src = qkv.contiguous();
  if (src.scalar_type() == at::kBFloat16) {
    at::Tensor q = at::empty({S * heads * hd}, src.options()), k = at::empty_like(q),
               v = at::empty_like(q);
    const auto bits = [](const at::Tensor& t) {
      return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
    };
    detail::rotary_split(bits(src), rs, bits(q), bits(k), bits(v));
    return {q, k, v};
  }
  at::Tensor q = at::empty({S * heads * hd}, src.options().dtype(at::kFloat)),
             k = at::empty_like(q), v = at::empty_like(q);
  detail::rotary_split(src.to(at::kFloat).data_ptr<float>(), rs, q.data_ptr<float>(),
                       k.data_ptr<float>(), v.data_ptr<float>());
  return {q, k, v};
}

at::Tensor VisionTower::block_rows(const Block& b, const at::Tensor& x, const at::Tensor& cos,
                                   const at::Tensor& sin,
                                   const std::vector<int64_t>& lengths) const {
  const int64_t S = x.size(0), heads = config_.num_heads, hd = config_.head_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  // Inference with bf16 products on CPU (float32 rows, bfloat16 weights, float32 norms/biases).
  const bool bf16_rows =
      b.qkv.weight.scalar_type() == at::kBFloat16 && b.proj.weight.scalar_type() == at::kBFloat16 &&
      b.fc2.weight.scalar_type() == at::kBFloat16 && x.is_cpu() && x.scalar_type() == at::kFloat &&
      b.norm1.weight.scalar_type() == at::kFloat;
  const auto norm_to_bf16 = [](const detail::LayerNorm& n, const at::Tensor& t) {
    const at::Tensor src = t.contiguous();
    at::Tensor out = at::empty(src.sizes(), src.options().dtype(at::kBFloat16));
    const int64_t cols = src.size(-1);
    detail::layer_norm_to_bf16(src.data_ptr<float>(), n.weight.contiguous().data_ptr<float>(),
                               n.bias.contiguous().data_ptr<float>(), static_cast<float>(n.eps),
                               reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()),
                               src.numel() / cols, cols);
    return out;
  };
  const auto add_residual = [](const at::Tensor& res, const at::Tensor& y, const at::Tensor& bias) {
    const at::Tensor r = res.contiguous(), yy = y.contiguous();
    at::Tensor out = at::empty_like(r);
    const int64_t cols = r.size(-1);
    detail::residual_add_bf16(r.data_ptr<float>(),
                              reinterpret_cast<const uint16_t*>(yy.data_ptr<at::BFloat16>()),
                              bias.defined() ? bias.contiguous().data_ptr<float>() : nullptr,
                              out.data_ptr<float>(), r.numel() / cols, cols);
    return out;
  };
  // part(offset, n, len): q, k, v of the `n` images of `len` rows from row `offset`, each
  // [n, heads, len, hd]; attention then applies `attn_scale`.
  std::function<std::array<at::Tensor, 3>(int64_t, int64_t, int64_t)> part;
  double attn_scale = scale;
  std::array<at::Tensor, 3> laid_out;
  at::Tensor qk_rot, v_rows;
  if (!b.qkv.weight.requires_grad() && x.is_cpu() && x.scalar_type() == at::kFloat) {
    // Inference: the product without its bias (bfloat16 with bf16 products); one pass adds the
    // bias, rotates, scales the queries and lays q, k, v out as attention reads them.
    const at::Tensor product =
        at::linear(bf16_rows ? norm_to_bf16(b.norm1, x) : b.norm1(x), b.qkv.weight);
    laid_out = split_rotate(b, product, cos, sin, lengths, scale);
    attn_scale = 1.0;
    part = [&](int64_t offset, int64_t n, int64_t len) {
      std::array<at::Tensor, 3> out;
      for (size_t i = 0; i < 3; ++i)
        out[i] = laid_out[i]
                     .narrow(0, offset * heads * hd, n * len * heads * hd)
                     .view({n, heads, len, hd});
      return out;
    };
  } else {
    const at::Tensor qkv = b.qkv(b.norm1(x)).reshape({S, 3, heads, hd});
    // Rotary on queries and keys together, in float32, cast back (as the reference).
    const at::Tensor qk = qkv.narrow(1, 0, 2).to(at::kFloat);  // [S, 2, heads, hd]
    const at::Tensor c = cos.view({S, 1, 1, hd}), s = sin.view({S, 1, 1, hd});
    qk_rot = (qk * c + detail::rotate_half(qk) * s).to(x.scalar_type());
    v_rows = qkv.select(1, 2);  // [S, heads, hd]
    part = [&](int64_t offset, int64_t n, int64_t len) {
      const at::Tensor p = qk_rot.narrow(0, offset, n * len).view({n, len, 2, heads, hd});
      return std::array<at::Tensor, 3>{
          p.select(2, 0).transpose(1, 2), p.select(2, 1).transpose(1, 2),
          v_rows.narrow(0, offset, n * len).view({n, len, heads, hd}).transpose(1, 2)};
    };
  }
  // Images of one length (a page's tiles differ by at most a token a side) attend as one batch.
  std::vector<at::Tensor> outs;
  int64_t offset = 0;
  for (size_t first = 0; first < lengths.size();) {
    size_t last = first;
    while (last + 1 < lengths.size() && lengths[last + 1] == lengths[first]) ++last;
    const int64_t len = lengths[first], n = static_cast<int64_t>(last - first + 1);
    const auto qkv = part(offset, n, len);
    // A bfloat16 model's attention as the reference's SDPA; the float32 model's bfloat16
    // attention with bf16 products stays the fast path.
    const at::Tensor o = detail::attention(qkv[0], qkv[1], qkv[2], attn_scale, /*causal=*/false, {},
                                           /*float32_scores=*/x.scalar_type() != at::kFloat);
    outs.push_back(o.transpose(1, 2).reshape({n * len, heads * hd}));
    offset += n * len;
    first = last + 1;
  }
  const at::Tensor attn = outs.size() == 1 ? outs[0] : at::cat(outs, 0);
  if (bf16_rows) {
    // bf16 products: each norm writes the product's bfloat16 input, and each product's bias and
    // residual add read its bfloat16 output, in one pass each.
    const at::Tensor h =
        add_residual(x, at::linear(attn.to(at::kBFloat16), b.proj.weight), b.proj.bias);
    const at::Tensor hidden = mlp_hidden(b, norm_to_bf16(b.norm2, h));
    return add_residual(h, at::linear(hidden, b.fc2.weight), b.fc2.bias);
  }
  const at::Tensor h = x + b.proj(attn);
  return h + b.fc2(mlp_hidden(b, b.norm2(h)));
}

at::Tensor VisionTower::patch_embed(const at::Tensor& px) const {
  // The Conv3d's stride equals its kernel, so it is a linear map of each flattened patch row. The
  // view is taken here, not at load time, so that autograd reaches the parameter when training.
  const int64_t hidden = patch_kernel_.size(0), C = config_.in_channels;
  const int64_t T = config_.temporal_patch_size, PP = config_.patch_size * config_.patch_size;
  if (T > 1 && px.size(0) > 0) {
    // A still image fills every temporal slot of a patch with the same pixels: the kernel's
    // temporal slices then act as their sum on one copy, at 1/T of the work. Checked on the data
    // (video frames differ), cheap next to the product itself.
    const at::Tensor frames = px.reshape({px.size(0), C, T, PP});
    const at::Tensor first = frames.select(2, 0);
    bool still = true;
    if (px.is_cpu() && px.is_contiguous() && px.scalar_type() == at::kFloat) {
      // Frame blocks compared as bytes, cheaper than a strided at::equal. (-0 and +0 differ
      // here: the full product is then taken, still right.)
      const float* p = px.data_ptr<float>();
      const size_t bytes = static_cast<size_t>(PP) * sizeof(float);
      for (int64_t r = 0; r < px.size(0) * C && still; ++r) {
        for (int64_t t = 1; t < T && still; ++t)
          still = std::memcmp(p + r * T * PP, p + (r * T + t) * PP, bytes) == 0;
      }
    } else {
      for (int64_t t = 1; t < T && still; ++t) still = at::equal(first, frames.select(2, t));
    }
    if (still) {
      const at::Tensor rows = first.reshape({px.size(0), C * PP});
      if (still_matrix_bf16_.defined())
        return detail::linear_bf16(rows, still_matrix_bf16_, patch_bias_);
      if (patch_kernel_.scalar_type() != at::kFloat) {
        // As the convolution over every frame computes it: the frames' kernels summed in float32
        // (exact; a bfloat16 sum rounds each weight once more), the product accumulated in
        // float32 and rounded once.
        const at::Tensor kernel =
            patch_kernel_.view({hidden, C, T, PP}).to(at::kFloat).sum(2).view({hidden, C * PP});
        const at::Tensor bias = patch_bias_.defined() ? patch_bias_.to(at::kFloat) : at::Tensor();
        return at::linear(rows.to(at::kFloat), kernel, bias).to(patch_kernel_.scalar_type());
      }
      const at::Tensor kernel =
          patch_kernel_.view({hidden, C, T, PP}).sum(2).view({hidden, C * PP});
      return at::linear(rows, kernel, patch_bias_);
    }
  }
  if (patch_matrix_bf16_.defined()) return detail::linear_bf16(px, patch_matrix_bf16_, patch_bias_);
  return at::linear(px, patch_kernel_.view({hidden, -1}), patch_bias_);
}

VisionFeatures VisionTower::forward(const at::Tensor& pixel_values,
                                    const std::vector<ImageGrid>& grids, bool deepstack,
                                    const at::Tensor& patch_rows) const {
  int64_t total = 0;
  std::vector<int64_t> lengths;
  VisionFeatures out;
  const int64_t m = config_.spatial_merge_size;
  for (const ImageGrid& g : grids) {
    if (g.t < 1 || g.h % m != 0 || g.w % m != 0 || g.h <= 0 || g.w <= 0) {
      throw InputError("image grid [" + std::to_string(g.t) + ", " + std::to_string(g.h) + ", " +
                       std::to_string(g.w) + "] is not a positive multiple of the merge size " +
                       std::to_string(m));
    }
    total += g.num_patches();
    for (int64_t t = 0; t < g.t; ++t) lengths.push_back(g.h * g.w);
    out.tokens_per_image.push_back(g.num_tokens(m));
  }
  if (pixel_values.dim() != 2 || pixel_values.size(0) != total ||
      pixel_values.size(1) != config_.patch_input_dim()) {
    throw InputError("pixel_values has shape " + shape_to_string(pixel_values.sizes().vec()) +
                     ", expected [" + std::to_string(total) + ", " +
                     std::to_string(config_.patch_input_dim()) + "]");
  }
  const auto dtype = patch_kernel_.scalar_type();
  const at::Tensor px = pixel_values.to(patch_kernel_.device(), dtype);
  at::Tensor h = patch_embed(px);
  if (patch_rows.defined()) {
    if (patch_rows.numel() != total) throw InternalError("vision tower: patch order size mismatch");
    h = h.index_select(0, patch_rows.to(h.device()));
  }
  h = (h + position_embeddings(grids)).to(dtype);
  const auto [cos, sin] = rotary(grids);
  const auto& ds = config_.deepstack_visual_indexes;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    h = block_forward(blocks_[i], h, cos, sin, lengths);
    const auto it = std::find(ds.begin(), ds.end(), static_cast<int>(i));
    if (deepstack && it != ds.end()) out.deepstack.push_back(deepstack_[it - ds.begin()](h));
  }
  out.embeds = merger_(h);
  return out;
}

}  // namespace ziprerank
