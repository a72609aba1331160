"""Generate a deterministic benchmark site for the publisher.

Usage::

    python bench/make_corpus.py N OUT_DIR [--seed S] [--force]

Creates ``OUT_DIR/config.yaml`` and ``OUT_DIR/posts/YYYY/*.md`` with N posts shaped
like ``shared/seed``: Jekyll-style YAML front matter (quoted mixed Japanese/English
title, ``date: 2025-09-07 08:26:39 +0000``, flow-list ``categories`` and ``tags``,
``author``, optional ``excerpt``, ``reading_time``) and about 7 KB of mixed
Japanese/English Markdown (headings, paragraphs, a list, sometimes a relative link,
an image or a code block).

Categories (pool of 20) and tags (pool of 100) are drawn with Zipf-like weights, so a
few of them hold most posts, as on a real blog. Everything comes from one
``random.Random(seed)`` and a fixed anchor date, so the same N and seed always give
byte-identical trees.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

__all__ = ["CONFIG_YAML", "CorpusInfo", "PostInfo", "generate_corpus", "main"]

#: The newest possible post date. Fixed (not "now") so the corpus is reproducible.
ANCHOR = datetime(2025, 9, 7, 8, 26, 39, tzinfo=UTC)
#: Posts are spread over this many seconds before ANCHOR (about three years).
SPAN_SECONDS = 3 * 365 * 24 * 3600
JST = timezone(timedelta(hours=9))
#: Share of posts whose front-matter date is written with a +0900 offset.
JST_SHARE = 0.08
#: Target whole-file size in UTF-8 bytes (uniform in this range, mean ~7 KB).
TARGET_BYTES = (6300, 7500)
#: Distinct paragraphs to draw post bodies from.
PARAGRAPH_POOL = 8000

CONFIG_YAML = """\
site:
  title: Bench Site
  url: https://bench.example.com
  description: Benchmark corpus
  language: ja
  author: Bench Author
  timezone: Asia/Tokyo
paths:
  posts: posts
  output: public
feeds:
  max_items: 20
"""

# fmt: off
# The word pools below are kept dense on purpose (data, not code).

# Ordered by popularity: the Zipf weights favour the first entries.
CATEGORIES: tuple[str, ...] = (
    "AI技術", "Cloud Computing", "セキュリティ", "Web開発", "Data Science",
    "ビジネス", "DevOps", "半導体", "Open Source", "モバイル",
    "Programming Languages", "量子コンピューティング", "Startups", "ロボティクス",
    "ブロックチェーン", "Gaming", "教育", "Hardware", "規制・政策", "Green Tech",
)

TAGS: tuple[str, ...] = (
    "AI", "最新ニュース", "技術動向", "Python", "クラウド", "生成AI", "LLM", "AWS",
    "セキュリティ", "Azure", "機械学習", "Google Cloud", "スタートアップ", "Rust",
    "データ分析", "Kubernetes", "JavaScript", "投資", "OpenAI", "半導体",
    "TypeScript", "オープンソース", "NVIDIA", "規制", "DevOps", "Docker", "エッジAI",
    "React", "データセンター", "Go", "量子コンピュータ", "Linux", "自動運転",
    "PostgreSQL", "ロボット", "WebAssembly", "5G", "MLOps", "サーバーレス", "API",
    "ブロックチェーン", "Apple", "ソフトバンク", "Microsoft", "Meta", "Anthropic",
    "トヨタ", "ゲーム", "教育", "Swift", "Kotlin", "Android", "iOS", "チップ",
    "TSMC", "Intel", "AMD", "サイバー攻撃", "ゼロトラスト", "プライバシー", "GDPR",
    "個人情報保護", "フィンテック", "Web3", "メタバース", "AR", "VR", "IoT",
    "スマートシティ", "脱炭素", "再生可能エネルギー", "電気自動車", "バッテリー",
    "宇宙", "衛星", "ヘルステック", "医療AI", "創薬", "Django", "FastAPI", "Vue",
    "Next.js", "GraphQL", "gRPC", "Terraform", "CI/CD", "GitHub", "テスト自動化",
    "SRE", "可観測性", "Observability", "SQLite", "Redis", "Kafka", "Spark",
    "データレイク", "ベクトルDB", "RAG", "エージェント", "プロンプト",
)

AUTHORS: tuple[str, ...] = (
    "Bench編集部", "山田 太郎", "Hanako Suzuki", "佐藤 健", "Alex Chen", "田中 美咲",
)

# (display name, ASCII slug form)
COMPANIES: tuple[tuple[str, str], ...] = (
    ("Microsoft", "microsoft"), ("Amazon", "amazon"), ("Google", "google"),
    ("Apple", "apple"), ("Meta", "meta"), ("NVIDIA", "nvidia"), ("OpenAI", "openai"),
    ("Anthropic", "anthropic"), ("ソフトバンク", "softbank"), ("トヨタ", "toyota"),
    ("ソニー", "sony"), ("楽天", "rakuten"), ("Intel", "intel"), ("AMD", "amd"),
    ("TSMC", "tsmc"), ("Samsung", "samsung"), ("IBM", "ibm"), ("Oracle", "oracle"),
    ("NTTデータ", "ntt-data"), ("富士通", "fujitsu"), ("日立", "hitachi"),
)

# (Japanese, English)
TOPICS: tuple[tuple[str, str], ...] = (
    ("クラウドAI", "cloud AI"), ("生成AI", "generative AI"), ("半導体", "semiconductors"),
    ("データセンター", "data centers"), ("量子コンピュータ", "quantum computing"),
    ("サイバーセキュリティ", "cybersecurity"), ("エッジコンピューティング", "edge computing"),
    ("自動運転", "autonomous driving"), ("ロボティクス", "robotics"),
    ("オープンソース", "open source"), ("開発者ツール", "developer tooling"),
    ("Webフレームワーク", "web frameworks"), ("機械学習基盤", "MLOps"),
    ("大規模言語モデル", "large language models"), ("コンテナ技術", "containers"),
    ("サーバーレス", "serverless"), ("ブロックチェーン", "blockchain"),
)

PRODUCTS: tuple[str, ...] = (
    "Azure OpenAI Service", "AWS Bedrock", "Gemini", "Kubernetes", "Rust", "Python 3.13",
    "TypeScript", "PostgreSQL", "Trainium2", "GitHub Copilot", "Llama", "WebAssembly",
    "Terraform", "Claude", "FastAPI", "Next.js",
)

PLACES: tuple[str, ...] = (
    "東京", "大阪", "福岡", "シンガポール", "ソウル", "シアトル", "ロンドン", "ベルリン",
)

JA_SENTENCES: tuple[str, ...] = (
    "{c}は、{tj}分野で{n}億ドル規模の投資を発表しました。",
    "{p}の導入により、開発者は{tj}の機能をより容易に利用できるようになります。",
    "この動きは、{tj}市場の競争構造に大きな影響を与えると考えられます。",
    "{c}と{c2}は、{tj}における戦略的パートナーシップを強化しています。",
    "専門家によれば、今後{m}ヶ月間で{tj}の採用がさらに加速する見込みです。",
    "特に注目されるのは、{p}を活用した{tj}の新しいユースケースです。",
    "{c}の担当者は「{tj}は次の成長の柱になる」と述べています。",
    "投資家にとっては、{tj}関連事業の成長が今後の重要な判断材料となります。",
    "一方で、{tj}にはセキュリティやガバナンス面での課題も残されています。",
    "{y}年には、{tj}の市場規模が{n}兆円に達するとの予測もあります。",
    "技術者にとっては、{p}のようなツールが今後の技術選定で中心的な役割を果たすでしょう。",
    "{c}は{p}の新バージョンを公開し、処理性能を約{pct}%向上させました。",
    "国内でも{c}を中心に{tj}への取り組みが広がっています。",
    "こうした背景から、{tj}に関する人材育成の重要性が一段と高まっています。",
    "{c}は{place}に新たな拠点を開設し、{tj}の研究開発を強化する計画です。",
    "規制当局は、{tj}の透明性確保に向けたガイドラインの策定を進めています。",
    "{c}の{p}は、既存システムとの互換性を保ちながら段階的に移行できる点が評価されています。",
    "コスト削減と運用効率の向上を両立できるかどうかが、{tj}導入の鍵となります。",
)

EN_SENTENCES: tuple[str, ...] = (
    "{c} announced a {n} billion dollar investment in {te}.",
    "Analysts expect adoption of {te} to accelerate over the next {m} months.",
    "With {p}, developers can ship {te} features with far less operational overhead.",
    "The partnership between {c} and {c2} signals a new phase for {te}.",
    "Benchmarks published by {c} show a {pct}% improvement over the previous generation.",
    "Security and governance remain open questions for {te} in regulated industries.",
    "Early adopters report that {p} cut their deployment time significantly.",
    "Open standards will be essential if {te} is to scale beyond a handful of vendors.",
    "According to the report, spending on {te} could reach {n} billion dollars by {y}.",
    "Teams evaluating {p} should start with a small pilot before committing.",
)

H2_HEADINGS: tuple[str, ...] = (
    "詳細分析", "背景", "Background", "技術的なポイント", "Key Takeaways", "市場への影響",
    "Market Impact", "今後の展望", "Outlook", "課題とリスク", "導入事例",
    "Implementation Notes", "競合との比較", "What This Means for Developers",
)

H3_TEMPLATES: tuple[str, ...] = (
    "{c}の戦略と投資", "{p} in practice", "{tj}の最新動向", "How {c} approaches {te}",
)

LIST_ITEMS: tuple[str, ...] = (
    "{p}の評価と小規模な検証", "Evaluate {p} for {te}", "{tj}の運用体制を見直す",
    "Track {c}'s roadmap for {te}", "コストとパフォーマンスの比較", "{c}の公式発表を確認する",
    "Plan a migration path to {p}", "セキュリティ要件の洗い出し",
)

LINK_SENTENCES: tuple[str, ...] = (
    "詳しくは[このサイトについて](/about/)をご覧ください。",
    "過去の記事は[アーカイブ](/archive/)からまとめて読めます。",
    "See the [about page](/about/) for how we cover {te}.",
    "関連する記事は[カテゴリ一覧](/categories/)から探せます。",
)

TITLE_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("{c}と{c2}、{tj}投資競争の最前線", "{ca} {c2a} {te} investment"),
    ("{p}入門: {tj}を始めるためのガイド", "{pa} getting started"),
    ("{te}の現在地 — {c}の戦略を読み解く", "{te} {ca} strategy"),
    ("{y}年の{tj}トレンド Top {k}", "{y} {te} trends"),
    ("Why {te} matters: {tj}の実践", "why {te} matters"),
    ("{c}が{p}を発表、{tj}に新たな選択肢", "{ca} {pa} announcement"),
)

CODE_BLOCKS: tuple[str, ...] = (
    "```python\nimport asyncio\n\nasync def main() -> None:\n    await asyncio.sleep(0)\n```",
    "```bash\nkubectl get pods -n bench\n```",
    "```yaml\nservice:\n  replicas: 3\n  region: ap-northeast-1\n```",
)

# fmt: on


@dataclass(frozen=True)
class PostInfo:
    """One generated post: where it is and the metadata a benchmark may need."""

    path: Path  # relative to the site folder, e.g. posts/2024/2024-03-05-slug-12.md
    date: datetime  # timezone-aware, as written in the front matter
    title: str
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    size: int  # UTF-8 bytes of the whole file


@dataclass(frozen=True)
class CorpusInfo:
    """What `generate_corpus` wrote."""

    root: Path
    posts: tuple[PostInfo, ...]
    total_bytes: int

    def newest(self, k: int = 1) -> list[PostInfo]:
        """Return the k newest posts, newest first (these appear in the feeds)."""
        return sorted(self.posts, key=lambda p: p.date, reverse=True)[:k]


def _zipf_cum_weights(n: int, s: float) -> list[float]:
    """Cumulative Zipf weights 1/k**s for ranks 1..n (for `random.choices`)."""
    total = 0.0
    out: list[float] = []
    for k in range(1, n + 1):
        total += 1.0 / k**s
        out.append(total)
    return out


def _pick_distinct(
    rng: random.Random, pool: tuple[str, ...], cum: list[float], k: int
) -> tuple[str, ...]:
    """Draw k distinct items from pool with the given cumulative weights, in draw order."""
    chosen: list[str] = []
    while len(chosen) < k:
        item = rng.choices(pool, cum_weights=cum)[0]
        if item not in chosen:
            chosen.append(item)
    return tuple(chosen)


class _Vocab:
    """Random fillers for the templates, all drawn from one RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def fields(self) -> dict[str, str]:
        """Return one consistent set of template values (a company, a topic, ...)."""
        rng = self.rng
        c, ca = rng.choice(COMPANIES)
        c2, c2a = rng.choice(COMPANIES)
        tj, te = rng.choice(TOPICS)
        p = rng.choice(PRODUCTS)
        return {
            "c": c,
            "ca": ca,
            "c2": c2,
            "c2a": c2a,
            "tj": tj,
            "te": te,
            "p": p,
            "pa": p,
            "n": str(rng.randint(2, 900)),
            "m": str(rng.choice((3, 6, 12, 18))),
            "y": str(rng.randint(2025, 2030)),
            "pct": str(rng.randint(5, 80)),
            "place": rng.choice(PLACES),
            "k": str(rng.randint(3, 10)),
        }


def _sentence_pool(
    rng: random.Random, templates: tuple[str, ...], size: int
) -> list[tuple[str, int]]:
    """Pre-render `size` sentences as (text, utf8_bytes), so per-post work is cheap."""
    vocab = _Vocab(rng)
    pool: list[tuple[str, int]] = []
    for i in range(size):
        text = templates[i % len(templates)].format(**vocab.fields())
        pool.append((text, len(text.encode("utf-8"))))
    return pool


def _slugify(text: str) -> str:
    """Lower-case ASCII slug: runs of anything but a-z0-9 become one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _format_date(when: datetime) -> str:
    """Format like the seed: ``2025-09-07 08:26:39 +0000``."""
    return when.strftime("%Y-%m-%d %H:%M:%S %z")


class _PostWriter:
    """Builds post texts; holds the shared pools and the RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.vocab = _Vocab(rng)
        self.ja = _sentence_pool(rng, JA_SENTENCES, 1500)
        self.en = _sentence_pool(rng, EN_SENTENCES, 500)
        self.h3 = [t for t, _ in _sentence_pool(rng, H3_TEMPLATES, 300)]
        self.items = [t for t, _ in _sentence_pool(rng, LIST_ITEMS, 400)]
        self.links = [t for t, _ in _sentence_pool(rng, LINK_SENTENCES, 40)]
        self.cat_cum = _zipf_cum_weights(len(CATEGORIES), 1.3)
        # Paragraphs are pre-built too (each reused by ~30 posts at N=10,000): per-post
        # sentence picking was most of the generation time.
        self.paragraphs = [self._make_paragraph() for _ in range(PARAGRAPH_POOL)]
        self.tag_cum = _zipf_cum_weights(len(TAGS), 1.0)

    def paragraph(self) -> tuple[str, int]:
        """A random paragraph from the pool, as (text, utf8_bytes)."""
        return self.paragraphs[int(self.rng.random() * len(self.paragraphs))]

    def _make_paragraph(self) -> tuple[str, int]:
        """One paragraph of 2-5 sentences, mostly Japanese, sometimes English."""
        rng = self.rng
        k = rng.randint(2, 5)
        if rng.random() < 0.25:
            parts = rng.choices(self.en, k=k)
            sep = " "
        else:
            parts = rng.choices(self.ja, k=k)
            sep = ""
        text = sep.join(t for t, _ in parts)
        return text, sum(b for _, b in parts) + len(sep) * (k - 1)

    def body(self, title: str, budget: int) -> str:
        """Markdown body of roughly `budget` UTF-8 bytes."""
        rng = self.rng
        blocks: list[str] = [f"# {title}", "## 概要"]
        text, used = self.paragraph()
        blocks.append(text)
        used += len(title.encode("utf-8")) + 20
        extras: list[str] = [self.list_block()]
        if rng.random() < 0.6:
            extras.append(rng.choice(self.links))
        if rng.random() < 0.35:
            alt = rng.choice(("x", "図1", "architecture diagram", "グラフ"))
            extras.append(f"![{alt}](/img/{rng.choice('abcdefgh')}.png)")
        if rng.random() < 0.15:
            extras.append(rng.choice(CODE_BLOCKS))
        used += sum(len(e.encode("utf-8")) + 2 for e in extras)
        headings = rng.sample(H2_HEADINGS, k=len(H2_HEADINGS))
        h = 0
        while used < budget:
            heading = headings[h % len(headings)]
            h += 1
            blocks.append(f"## {heading}")
            used += len(heading.encode("utf-8")) + 5
            if rng.random() < 0.4:
                sub = rng.choice(self.h3)
                blocks.append(f"### {sub}")
                used += len(sub.encode("utf-8")) + 6
            for _ in range(rng.randint(1, 3)):
                text, n = self.paragraph()
                blocks.append(text)
                used += n + 2
                if used >= budget:
                    break
        # Scatter the list, link, image and code block among the later blocks, never
        # between a heading and its first paragraph.
        for extra in extras:
            spots = [i for i in range(3, len(blocks) + 1) if not blocks[i - 1].startswith("#")]
            blocks.insert(rng.choice(spots), extra)
        return "\n\n".join(blocks) + "\n"

    def list_block(self) -> str:
        """A bulleted (or sometimes numbered) list of 3-6 items."""
        rng = self.rng
        items = rng.choices(self.items, k=rng.randint(3, 6))
        if rng.random() < 0.3:
            return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))
        return "\n".join(f"- {item}" for item in items)

    def post(self, index: int, utc: datetime) -> tuple[str, PostInfo]:
        """Render post number `index` published at `utc`; return (text, info)."""
        rng = self.rng
        when = utc.astimezone(JST) if rng.random() < JST_SHARE else utc
        f = self.vocab.fields()
        title_tpl, slug_tpl = rng.choice(TITLE_TEMPLATES)
        title = title_tpl.format(**f)
        slug = f"{_slugify(slug_tpl.format(**f))}-{index}"
        categories = _pick_distinct(rng, CATEGORIES, self.cat_cum, 1 if rng.random() < 0.65 else 2)
        tags = _pick_distinct(rng, TAGS, self.tag_cum, rng.randint(2, 5))
        lines = [
            "---",
            "layout: post",
            f"title: {json.dumps(title, ensure_ascii=False)}",
            f"date: {_format_date(when)}",
            f"categories: {json.dumps(list(categories), ensure_ascii=False)}",
            f"tags: {json.dumps(list(tags), ensure_ascii=False)}",
            f"author: {json.dumps(rng.choice(AUTHORS), ensure_ascii=False)}",
        ]
        if rng.random() < 0.5:
            if rng.random() < 0.7:
                excerpt = f"{f['tj']}について{f['c']}の動向を中心に詳細に分析します。"
            else:
                excerpt = f"A closer look at {f['te']} and what {f['c']} is planning next."
            lines.append(f"excerpt: {json.dumps(excerpt, ensure_ascii=False)}")
        budget = rng.randint(*TARGET_BYTES)
        body = self.body(title, budget - 330)
        lines.append(f"reading_time: {max(1, round(len(body) / 320))}")
        lines.append("---")
        text = "\n".join(lines) + "\n\n" + body
        rel = Path("posts") / f"{when.year}" / f"{when:%Y-%m-%d}-{slug}.md"
        info = PostInfo(rel, when, title, categories, tags, 0)
        return text, info


def generate_corpus(n: int, out_dir: Path | str, seed: int = 42, force: bool = False) -> CorpusInfo:
    """Write config.yaml and n posts under out_dir; return what was written.

    Raises FileExistsError if out_dir/posts already has files, unless force is true,
    in which case that posts folder (only it) is removed first.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    root = Path(out_dir)
    posts_dir = root / "posts"
    if posts_dir.exists() and any(posts_dir.iterdir()):
        if not force:
            raise FileExistsError(f"{posts_dir} is not empty (use --force to replace it)")
        shutil.rmtree(posts_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")

    rng = random.Random(seed)
    writer = _PostWriter(rng)
    # Distinct instants, so no two posts tie on date (feed order stays well defined).
    offsets = rng.sample(range(SPAN_SECONDS), n)
    made_dirs: set[Path] = set()
    infos: list[PostInfo] = []
    total = 0
    for i, offset in enumerate(offsets):
        text, info = writer.post(i, ANCHOR - timedelta(seconds=offset))
        data = text.encode("utf-8")
        path = root / info.path
        if path.parent not in made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path.parent)
        path.write_bytes(data)
        total += len(data)
        infos.append(
            PostInfo(info.path, info.date, info.title, info.categories, info.tags, len(data))
        )
    return CorpusInfo(root, tuple(infos), total)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("n", type=int, help="number of posts")
    parser.add_argument("out_dir", type=Path, help="site folder to create")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--force", action="store_true", help="replace OUT_DIR/posts if it already has files"
    )
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("N must be >= 0")
    start = time.perf_counter()
    try:
        info = generate_corpus(args.n, args.out_dir, seed=args.seed, force=args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(
        f"wrote {len(info.posts)} posts ({info.total_bytes / 1e6:.1f} MB) "
        f"to {info.root} in {elapsed:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
