#include "cli/commands_render.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ziprerank/document.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/render.hpp"

namespace ziprerank::cli {

namespace {

struct RenderArgs {
  // passage mode
  std::string text, input;
  int size = 280;
  std::string font;
  int font_size = 12;
  bool no_fill = false;
  std::string layout = "raqm";
  int threads = 1;
  // document mode
  std::string document;
  uint64_t seed = 0;
  std::string page_size, family, header;
  int columns = 0;
  bool contents = false, no_contents = false;
  // both
  std::string out;
  CLI::App* cmd = nullptr;
};

constexpr const char* kFooter =
    "Passage mode (--text or --input) reproduces the reference's stage-1 renderer: a square white\n"
    "canvas, DejaVuSansMono, padding 20, greedy word wrap with hyphenation of over-long words, "
    "and\n"
    "(unless --no-fill-canvas) the largest font size 6..48 whose lines fit, keeping --font-size "
    "when\n"
    "the text already fills 70% of the height; text that does not fit is cut, with \"...\" when\n"
    "half a line is left. --input is JSONL: each line a JSON string or {\"id\": ..., \"text\": "
    "...};\n"
    "images are named by id (else by line number) and listed in OUT/passages.jsonl.\n"
    "Document mode (--document) lays a JSON document (title, sections with paragraphs, lists and\n"
    "tables; see include/ziprerank/document.hpp) out as A4 or Letter pages, longest side 1024 px,\n"
    "in a look drawn from --seed, and writes OUT/page_NNN.png plus OUT/words.json (every word's\n"
    "page, text, ink box and role, the page each section starts on, the contents pages).\n"
    "The written file (passage PNG, passages.jsonl or words.json) is printed on stdout.";

TextLayout to_layout(const std::string& s) {
  return s == "basic" ? TextLayout::kBasic : TextLayout::kRaqm;
}

void make_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    throw InputError("cannot create the output folder " + dir + ": " + ec.message());
  }
}

std::string join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

// File names come from ids: anything but letters, digits, '.', '-' and '_' becomes '_'.
std::string safe_name(const std::string& id) {
  std::string out;
  for (unsigned char c : id) {
    out.push_back(std::isalnum(c) || c == '.' || c == '-' || c == '_' ? static_cast<char>(c) : '_');
  }
  if (out.empty() || out[0] == '.') out.insert(out.begin(), '_');
  return out.substr(0, 200);
}

struct Passage {
  std::string id, text, file;
  size_t line = 0;
};

std::string json_error_place(const nlohmann::json::parse_error& e) {
  return "column " + std::to_string(e.byte);
}

std::vector<Passage> read_passages(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open " + path);
  std::vector<Passage> out;
  std::unordered_map<std::string, size_t> names;
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw InputError(where + ": not valid JSON at " + json_error_place(e) +
                       " (each line must be a JSON string or an object with \"text\")");
    }
    Passage p;
    p.line = n;
    if (j.is_string()) {
      p.text = j.get<std::string>();
    } else if (j.is_object()) {
      auto t = j.find("text");
      if (t == j.end() || !t->is_string()) {
        throw InputError(where + ": the object needs a string \"text\"");
      }
      p.text = t->get<std::string>();
      auto id = j.find("id");
      if (id != j.end() && id->is_string()) {
        p.id = id->get<std::string>();
      } else if (id != j.end() && id->is_number_integer()) {
        p.id = id->dump();
      } else if (id != j.end() && !id->is_null()) {
        throw InputError(where + ": \"id\" must be a string or an integer");
      }
    } else {
      throw InputError(where + ": expected a JSON string or an object with \"text\", got " +
                       std::string(j.type_name()));
    }
    if (p.id.empty()) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "line%06zu", n);
      p.file = std::string(buf) + ".png";
    } else {
      p.file = safe_name(p.id) + ".png";
    }
    auto [it, fresh] = names.emplace(p.file, n);
    if (!fresh) {
      throw InputError(where + ": passage id \"" + p.id + "\" gives the file name " + p.file +
                       ", already used by line " + std::to_string(it->second));
    }
    out.push_back(std::move(p));
  }
  if (in.bad()) throw InputError("cannot read " + path);
  if (out.empty()) throw InputError(path + ": no passages (the file is empty)");
  return out;
}

PassageRenderOptions passage_options(const RenderArgs& a) {
  PassageRenderOptions o;
  o.size = a.size;
  o.font_path = a.font;
  o.font_size = a.font_size;
  o.fill_canvas = !a.no_fill;
  o.layout = to_layout(a.layout);
  if (o.size <= 2 * o.padding) {
    throw UsageError("--size must be larger than twice the padding (" +
                     std::to_string(2 * o.padding) + ")");
  }
  return o;
}

int run_passages(const RenderArgs& a) {
  const PassageRenderOptions options = passage_options(a);
  make_dir(a.out);
  if (!a.text.empty() || a.input.empty()) {
    const PassageLayout layout = layout_passage(a.text, options);
    if (layout.lines.empty()) throw UsageError("--text is empty (it has no words to draw)");
    const std::string path = join(a.out, "passage.png");
    save_png(draw_passage(layout, options), path);
    spdlog::info("font size {}, {} line(s){}", layout.font_size, layout.lines.size(),
                 layout.drawn_lines < static_cast<int>(layout.lines.size()) ? ", cut to fit" : "");
    std::cout << path << "\n";
    return 0;
  }

  const std::vector<Passage> passages = read_passages(a.input);
  // Check the font once, up front, rather than once per worker.
  layout_passage("check", options);
  struct Outcome {
    int font_size = 0, lines = 0, drawn = 0;
    bool ellipsis = false;
  };
  std::vector<Outcome> outcomes(passages.size());
  std::atomic<size_t> next{0}, done{0};
  std::mutex error_mutex;
  std::exception_ptr error;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    try {
      for (size_t i = next++; i < passages.size(); i = next++) {
        {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (error) return;
        }
        const Passage& p = passages[i];
        const PassageLayout layout = layout_passage(p.text, options);
        save_png(draw_passage(layout, options), join(a.out, p.file));
        outcomes[i] = {layout.font_size, static_cast<int>(layout.lines.size()), layout.drawn_lines,
                       layout.ellipsis};
        ++done;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  const int threads = std::max(1, std::min<int>(a.threads, static_cast<int>(passages.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  // The main thread renders too and reports progress between passages.
  std::thread reporter;
  std::atomic<bool> finished{false};
  if (passages.size() >= 200) {
    reporter = std::thread([&] {
      auto last = std::chrono::steady_clock::now();
      while (!finished) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const auto now = std::chrono::steady_clock::now();
        if (now - last < std::chrono::seconds(5)) continue;
        last = now;
        const double s = std::chrono::duration<double>(now - start).count();
        spdlog::info("rendered {}/{} passages ({:.0f}/s)", done.load(), passages.size(),
                     done.load() / std::max(s, 1e-9));
      }
    });
  }
  worker();
  for (auto& t : pool) t.join();
  finished = true;
  if (reporter.joinable()) reporter.join();
  if (error) std::rethrow_exception(error);

  size_t empty = 0;
  for (size_t i = 0; i < passages.size(); ++i) {
    if (outcomes[i].lines > 0) continue;
    if (++empty <= 10) {
      spdlog::warn("{}:{}: empty passage; its canvas is blank, as the reference leaves it", a.input,
                   passages[i].line);
    }
  }
  if (empty > 10) spdlog::warn("{} empty passages in all", empty);

  const std::string index = join(a.out, "passages.jsonl");
  std::ofstream out(index, std::ios::binary);
  size_t cut = 0;
  for (size_t i = 0; i < passages.size(); ++i) {
    const Outcome& o = outcomes[i];
    const bool truncated = o.drawn < o.lines;
    cut += truncated;
    nlohmann::json row = {{"line", passages[i].line}, {"file", passages[i].file},
                          {"font_size", o.font_size}, {"lines", o.lines},
                          {"drawn_lines", o.drawn},   {"truncated", truncated}};
    if (!passages[i].id.empty()) row["id"] = passages[i].id;
    out << row.dump() << "\n";
  }
  out.close();
  if (!out) throw InputError("cannot write " + index);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("rendered {} passage(s) in {:.1f} s ({:.0f}/s); {} cut to fit", passages.size(), s,
               passages.size() / std::max(s, 1e-9), cut);
  std::cout << index << "\n";
  return 0;
}

int run_document(const RenderArgs& a) {
  const Document doc = load_document(a.document);
  DocumentStyleRequest request;
  if (!a.page_size.empty())
    request.page_size = a.page_size == "letter" ? PageSize::kLetter : PageSize::kA4;
  if (a.columns) request.columns = a.columns;
  if (a.family == "serif") request.family = FontFamily::kSerif;
  if (a.family == "sans") request.family = FontFamily::kSans;
  if (a.family == "mono") request.family = FontFamily::kMono;
  if (a.family == "latex") request.family = FontFamily::kLatex;
  if (a.contents) request.contents_page = true;
  if (a.no_contents) request.contents_page = false;
  if (!a.header.empty()) request.header_text = a.header;
  const DocumentStyle style = choose_document_style(a.seed, request);
  const RenderedDocument rendered = render_document(doc, style);
  make_dir(a.out);
  for (size_t p = 0; p < rendered.pages.size(); ++p) {
    char name[32];
    std::snprintf(name, sizeof(name), "page_%03zu.png", p);
    save_png(rendered.pages[p], join(a.out, name));
  }
  const std::string words = join(a.out, "words.json");
  std::ofstream out(words, std::ios::binary);
  out << document_layout_json(rendered);
  out.close();
  if (!out) throw InputError("cannot write " + words);
  spdlog::info("{} page(s), {} words; {} {} px, {} column(s), {}{}", rendered.pages.size(),
               rendered.words.size(), style.font_name, style.body_size, style.columns,
               style.page_size == PageSize::kA4 ? "A4" : "Letter",
               style.contents_page ? ", contents page" : "");
  std::cout << words << "\n";
  return 0;
}

int run_render(const RenderArgs& a) {
  const int modes = (a.cmd->count("--text") > 0) + !a.input.empty() + !a.document.empty();
  if (modes != 1) throw UsageError("give exactly one of --text, --input or --document");
  if (!a.document.empty()) {
    for (const char* flag : {"--size", "--font", "--font-size", "--no-fill-canvas", "--layout"}) {
      if (a.cmd->count(flag) > 0)
        throw UsageError(std::string(flag) + " applies to passages, not --document");
    }
    if (a.contents && a.no_contents) throw UsageError("--contents and --no-contents conflict");
    return run_document(a);
  }
  for (const char* flag : {"--seed", "--page-size", "--columns", "--family", "--contents",
                           "--no-contents", "--header"}) {
    if (a.cmd->count(flag) > 0) throw UsageError(std::string(flag) + " applies to --document only");
  }
  return run_passages(a);
}

}  // namespace

void register_render_command(CLI::App& app, Handler& handler) {
  auto a = std::make_shared<RenderArgs>();
  auto* cmd = app.add_subcommand("render", "Render text passages or documents to page images");
  a->cmd = cmd;
  add_output_folder_option(cmd, a->out, "Output folder (created if missing)");
  cmd->add_option("--text", a->text, "One passage to render (writes OUT/passage.png)");
  cmd->add_option("--input", a->input,
                  "Passages JSONL: a JSON string or {\"id\",\"text\"} per line")
      ->check(CLI::ExistingFile);
  cmd->add_option("--document", a->document, "Document JSON to lay out as pages")
      ->check(CLI::ExistingFile);
  cmd->add_option("--size", a->size, "Passage canvas side in pixels")
      ->check(CLI::Range(41, 16384))
      ->capture_default_str();
  cmd->add_option("--font", a->font,
                  "Passage font file (default: " + std::string(kDefaultPassageFont) + ")");
  cmd->add_option("--font-size", a->font_size,
                  "Starting font size in px; the fixed size with --no-fill-canvas")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_flag("--no-fill-canvas", a->no_fill,
                "Keep --font-size instead of searching 6..48 for the size that fills the canvas");
  cmd->add_option(
         "--layout", a->layout,
         "Pillow layout engine reproduced: raqm (libraqm present, the usual case) or basic")
      ->check(CLI::IsMember({"raqm", "basic"}))
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "Passages rendered in parallel")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Document look (fonts, sizes, margins, columns...)")
      ->capture_default_str();
  cmd->add_option("--page-size", a->page_size, "a4 or letter (default: from the seed)")
      ->check(CLI::IsMember({"a4", "letter"}));
  cmd->add_option("--columns", a->columns, "1 or 2 (default: from the seed)")
      ->check(CLI::IsMember({1, 2}));
  cmd->add_option("--family", a->family,
                  "serif (Liberation/Noto/DejaVu Serif), sans, mono or latex (Latin Modern); "
                  "default: from the seed")
      ->check(CLI::IsMember({"serif", "sans", "mono", "latex"}));
  cmd->add_flag("--contents", a->contents, "Add a contents page (default: from the seed)");
  cmd->add_flag("--no-contents", a->no_contents, "No contents page");
  cmd->add_option("--header", a->header, "Running header text (default: the document's)");
  cmd->footer(kFooter);
  cmd->callback([&handler, a] { handler = [a] { return run_render(*a); }; });
}

}  // namespace ziprerank::cli
