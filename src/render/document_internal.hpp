// What the document renderer's source files share: the installed-font checks and the style's
// validation. Private to the render module.
#pragma once

#include <string>

#include "ziprerank/document.hpp"

namespace ziprerank::render {

bool file_exists(const std::string& path);
/// "serif", "sans", "mono" or "latex".
const char* family_name(FontFamily f);
/// Throws InputError for a style the layout cannot honour (sizes, margins, missing fonts).
void validate_style(const DocumentStyle& s);

}  // namespace ziprerank::render
