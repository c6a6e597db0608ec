// Image decoding and the Qwen2-VL / Qwen3-VL image preprocessing stage (pure CPU).
//
// The stage reproduces, number for number, what the reference Python pipeline does to one page:
//   PIL decode + convert("RGB") -> optional ZipRerank page pre-resize (PIL LANCZOS, longest side
//   1024) -> smart_resize -> bicubic antialiased resize on uint8 -> fused rescale/normalize ->
//   patchify into `pixel_values` rows.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ziprerank/config.hpp"

namespace ziprerank {

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC).
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  ///< width * height * 3 bytes

  int64_t num_pixels() const { return static_cast<int64_t>(width) * height; }
};

/// Default refusal threshold for decoded images, checked against the dimensions in the file
/// header before any pixel is decoded, so a small file that claims a huge canvas (a
/// decompression bomb) is rejected without allocating it.
inline constexpr int64_t kDefaultMaxImagePixels = 50'000'000;

/// Decodes PNG, JPEG, WebP or BMP bytes into RGB the way PIL's `Image.open(...).convert("RGB")`
/// does: alpha is dropped (not composited), gray is replicated, palettes are expanded. 16-bit
/// samples follow PIL: a 16-bit gray PNG is clipped to 255 (PIL opens it as mode "I"), while
/// 16-bit colour or gray+alpha PNGs keep the high byte. CMYK (and YCCK) JPEGs follow PIL: samples
/// read as Adobe-inverted, then PIL's rounded CMYK to RGB. EXIF orientation is ignored, as
/// `Image.open` ignores it. Throws InputError naming `origin` for empty, truncated, corrupt,
/// unsupported or oversized data.
Image decode_image(const uint8_t* data, size_t size, const std::string& origin,
                   int64_t max_pixels = kDefaultMaxImagePixels);
Image decode_image(const std::vector<uint8_t>& bytes, const std::string& origin,
                   int64_t max_pixels = kDefaultMaxImagePixels);

/// Reads and decodes an image file; errors name `path`.
Image load_image(const std::string& path, int64_t max_pixels = kDefaultMaxImagePixels);

/// Throws InputError("<path>: ...") unless `path` is, after following symbolic links, a regular
/// file: a missing path, a folder, a FIFO (opening one for reading would wait for a writer
/// forever), a socket, a device, a symlink loop or an unreadable folder on the way each get
/// their own message. `what` names what the file should be ("image", "PDF").
void require_regular_file(const std::string& path, const std::string& what);

/// ZipRerank's page pre-resize (`resize_image_if_needed`): when the longest side exceeds
/// `max_side`, both sides are scaled by max_side/longest and truncated, then resampled with
/// PIL's LANCZOS filter (bit-exact with Pillow's 8-bit fixed-point implementation).
/// Otherwise the image is returned unchanged.
Image page_preresize(const Image& image, int max_side = 1024);

/// The `width` x `height` window of `image` whose top-left pixel is (`x`, `y`); throws
/// InputError when the window is empty or leaves the image.
Image crop_image(const Image& image, int x, int y, int width, int height);

/// PIL `Image.resize((width, height), Image.LANCZOS)` for an RGB image, bit-exact.
Image resize_lanczos_pil(const Image& image, int width, int height);

struct ResizedSize {
  int64_t height = 0;
  int64_t width = 0;
};

/// Qwen2-VL `smart_resize`: the nearest multiple of `factor` on each side, rescaled to keep the
/// pixel count within [min_pixels, max_pixels]. Throws InputError when the aspect ratio exceeds
/// 200 or a side is not positive.
ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels);

/// Which arithmetic the antialiased resize uses. The Python reference resizes a uint8 tensor
/// with torchvision v2, whose behaviour depends on the installed versions. The two differ by
/// up to ~20 levels near sharp edges when upscaling (the uint8 path clips its intermediate
/// row pass to 0..255) and by 1 level in a few samples when downscaling.
enum class ResizeArithmetic {
  /// torch >= 2.1 with torchvision >= 0.16 on CPU, what transformers' fast Qwen2-VL processor
  /// runs by default: interpolate() works on uint8 directly with 16-bit fixed-point weights.
  /// (For bilinear, torchvision takes this path only when torch's CPU capability string
  /// contains "AVX2"; an AVX-512 build reports "AVX512" and uses kFloatRound instead.)
  kUint8FixedPoint,
  /// Older torchvision, or tensors on a GPU: the image is converted to float32, interpolated
  /// by the linked libtorch, clamped, rounded half to even and cast back to uint8.
  kFloatRound,
};

/// Antialiased resize of an RGB image to (height, width), as torchvision v2 `resize` does on a
/// uint8 tensor with antialias=True. `resample` is the PIL code from the processor config:
/// 3 = bicubic (Keys a = -0.5), 2 = bilinear. A same-size request returns the input unchanged.
Image resize_antialiased(const Image& image, int64_t height, int64_t width, int resample = 3,
                         ResizeArithmetic arithmetic = ResizeArithmetic::kUint8FixedPoint);

/// Rescale + normalize into a float32 [3, H, W] tensor, in the float32 operation order of
/// transformers' fast image processor (rescale fused into mean/std when both are enabled).
at::Tensor normalize_image(const Image& image, const PreprocessorConfig& config);

/// Patchify a normalized [3, H, W] frame into `pixel_values` rows [gt*gh*gw, C*T*P*P]: the frame
/// is repeated to `temporal_patch_size` frames; rows are ordered by merge window (block row,
/// block column, row inside, column inside) and each row is laid out as (c, t, y, x).
/// H and W must be multiples of patch_size * merge_size.
at::Tensor patchify(const at::Tensor& chw, const PreprocessorConfig& config);

/// patchify(normalize_image(image, config), config) in one pass over the 8-bit pixels (each
/// channel's 256 values normalised once), bit for bit.
at::Tensor normalize_patchify(const Image& image, const PreprocessorConfig& config);

struct PreprocessedImage {
  at::Tensor pixel_values;            ///< float32 [gt*gh*gw, C*T*P*P]
  std::array<int64_t, 3> grid_thw{};  ///< {gt, gh, gw}, in patches
  int64_t merge_size = 2;

  /// Number of `<|image_pad|>` tokens the image expands to: gt*gh*gw / merge_size^2.
  int64_t num_tokens() const {
    return grid_thw[0] * grid_thw[1] * grid_thw[2] / (merge_size * merge_size);
  }
};

/// The whole stage for one image. `page_preresize` applies ZipRerank's LANCZOS shrink to a
/// longest side of 1024 first (eval and stage-2 training do; the bare processor does not).
PreprocessedImage preprocess_image(
    const Image& image, const PreprocessorConfig& config, bool page_preresize,
    ResizeArithmetic arithmetic = ResizeArithmetic::kUint8FixedPoint);

}  // namespace ziprerank
