"""Time ``python -m publisher build`` on generated sites of several sizes.

Usage::

    python bench/build.py [--sizes 1000,10000] [--keep DIR] [--repeats 5]
                          [--command "-m publisher --config {config} build"] [--seed 42]

``--command`` takes the interpreter arguments; ``{config}`` in it is replaced by the
site's config path, otherwise ``--config PATH`` is appended.

For each N a site is generated with ``make_corpus.generate_corpus`` and the build is
run as a whole subprocess (``sys.executable``, cwd = the site, PYTHONPATH = a
byte-compiled copy of this repo's package, so the package under test is the
working tree's, installed as pip would install it). Cases, each repeated and reported
as the median:

* ``cold``: output folder and ``.publisher-cache`` moved away before every run
  (deleted when all runs are over: see :func:`_clean`);
* ``warm``: after a build that fills the cache, a line is appended to the newest
  post (so it is in the feeds) and the next build is timed;
* ``no-change``: the cache is filled and nothing changed.

With ``--archive both`` (the default) every case also runs with RFC 5005 archive
pages turned off (``feeds.archive: false``, in a second config file beside the
site's, building into its own output folder and cache), the two variants taking
turns run by run, and the summary gives each case's archives-on/off ratio (the
median of the ratios of runs taken one after the other).

Peak memory is the child's own max RSS from ``os.wait4``, taken in a tiny wrapper
interpreter (``getrusage(RUSAGE_CHILDREN)`` would be the maximum over all children so
far, and a child spawned from this script would inherit its high-water RSS).

Exit status: 0 even when a target is missed (this is a report), 1 if a build fails.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from make_corpus import CONFIG_YAML, CorpusInfo, generate_corpus

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ".publisher-cache"
OUTPUT_DIR = "public"  # paths.output in make_corpus.CONFIG_YAML
DEFAULT_COMMAND = "-m publisher --config {config} build"

#: Targets at N = TARGET_N (seconds, seconds, MB).
TARGET_N = 10_000
TARGET_COLD_S = 1.5
TARGET_WARM_S = 0.3
TARGET_PEAK_MB = 200.0


class BuildFailed(Exception):
    """A build command exited non-zero; carries what the user needs to see."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"exit status {returncode}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Run:
    """One timed child process."""

    wall_s: float
    maxrss_mb: float


@dataclass(frozen=True)
class CaseResult:
    """All runs of one case at one N, summarised by their medians."""

    n: int
    case: str
    runs: tuple[Run, ...]
    variant: str = "archives on"

    @property
    def wall_s(self) -> float:
        """Median wall-clock seconds."""
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def rss_mb(self) -> float:
        """Median peak RSS in MB."""
        return statistics.median(r.maxrss_mb for r in self.runs)

    @property
    def max_rss_mb(self) -> float:
        """Highest peak RSS over the runs, in MB."""
        return max(r.maxrss_mb for r in self.runs)


def _maxrss_mb(ru_maxrss: int) -> float:
    """Convert ru_maxrss to MB: KiB on Linux, bytes on macOS."""
    kib = ru_maxrss / 1024 if sys.platform == "darwin" else ru_maxrss
    return kib / 1024


def _tail(text: str, lines: int = 30) -> str:
    """The last `lines` lines of text."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


#: Runs in a fresh, small interpreter: spawns the build, waits for exactly that child
#: with os.wait4 and writes "wall_seconds ru_maxrss exit_code cpu_seconds" to the file in
#: argv[1] (cpu: user + system).
#: Why not spawn from this script: on Linux a child's ru_maxrss starts from the
#: high-water RSS of the process that spawned it (the pre-exec address space counts),
#: so a build started from here would report at least this script's own peak, which
#: grows with N. The wrapper's own peak (~10 MB) is below any real build's.
WRAPPER = """\
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(out, "w") as f:
    code = os.waitstatus_to_exitcode(status)
    f.write(f"{wall!r} {usage.ru_maxrss} {code} {usage.ru_utime + usage.ru_stime!r}")
"""


def run_timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> Run:
    """Run argv once (argv[0] an absolute path); return its wall time and own peak RSS.

    The command is started by the small WRAPPER interpreter, which times it and reaps
    it with ``os.wait4``, so the rusage is that child's alone. Output goes to
    temporary files rather than pipes, so a chatty child cannot block on a full pipe.
    Raises BuildFailed on a non-zero exit.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory(prefix="publisher-bench-run-") as tmp,
    ):
        result = Path(tmp) / "result"
        wrapper = [sys.executable, "-S", "-c", WRAPPER, str(result), *argv]
        code = subprocess.call(
            wrapper, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        fields = result.read_text().split() if result.is_file() else []
        if code == 0 and len(fields) == 4:  # the wrapper ran; code is now the build's
            code = int(fields[2])
        if code != 0 or len(fields) != 4:
            out.seek(0)
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
            stdout = out.read().decode("utf-8", "replace")
            raise BuildFailed(argv, code, stderr or stdout)
    return Run(float(fields[0]), _maxrss_mb(int(fields[1])))


class Variant(NamedTuple):
    """One configuration of the site, with its own output folder and cache."""

    name: str  # "archives on" or "archives off"
    argv: list[str]  # the build command
    output: str  # paths.output, relative to the site
    cache: str  # paths.cache, relative to the site


def _clean(site: Path, variant: Variant, trash: Path) -> None:
    """Move the variant's output and cache out of the way, as for a first build.

    Moved into ``trash`` (deleted after every run is over) rather than deleted
    here: on a file system mounted with ``discard`` (ext4 here), deleting a
    cold build's 90 MB of archive pages just before the next timed run made
    that run's file creation wait for the journal (1,517 ``mkstemp`` calls took
    1.2 s instead of 0.04 s), which charged the build for the harness's
    cleaning. Falls back to deleting when ``trash`` is on another file system.
    """
    trash.mkdir(parents=True, exist_ok=True)
    for name in (variant.output, variant.cache):
        path = site / name
        if not path.exists():
            continue
        try:
            path.rename(trash / f"{len(list(trash.iterdir()))}-{path.name}")
        except OSError:
            shutil.rmtree(path, ignore_errors=True)


def _alternate(
    times: int,
    variants: Sequence[Variant],
    prepare: Callable[[int, Variant], None],
    timed: Callable[[Variant], Run],
) -> dict[str, list[Run]]:
    """``times`` rounds of prepare(i, v) untimed then timed(v) for each variant in turn.

    Alternating the variants run by run, rather than one after the other, lets
    the noise of a shared machine fall on both alike.
    """
    runs: dict[str, list[Run]] = {v.name: [] for v in variants}
    for i in range(times):
        for variant in variants:
            prepare(i, variant)
            runs[variant.name].append(timed(variant))
    return runs


def bench_site(
    n: int,
    site: Path,
    corpus: CorpusInfo,
    variants: Sequence[Variant],
    env: dict[str, str],
    repeats: int,
    trash: Path,
) -> list[CaseResult]:
    """Measure the cold, warm and no-change cases on one generated site, for each variant."""

    def timed(variant: Variant) -> Run:
        return run_timed(variant.argv, site, env)

    def clean(_: int, variant: Variant) -> None:
        _clean(site, variant, trash)

    def no_prep(_: int, __: Variant) -> None:
        return None

    cold = _alternate(repeats, variants, clean, timed)
    for variant in variants:
        if not (site / variant.output).exists():
            print(f"  note: N={n}: the build created no {variant.output}/ folder", flush=True)
        timed(variant)  # fill the cache (the cold runs should have, but be explicit)
    newest = site / corpus.newest()[0].path

    def touch_newest(i: int, variant: Variant) -> None:
        # One edit before each round: every variant's build then sees exactly one.
        if variant is variants[0]:
            with newest.open("a", encoding="utf-8") as f:
                f.write(f"\n追記 {i + 1}: benchmark edit, appended line.\n")

    warm = _alternate(repeats, variants, touch_newest, timed)
    for variant in variants:
        timed(variant)  # settle: the cache now matches the edited post
    unchanged = _alternate(repeats, variants, no_prep, timed)
    return [
        CaseResult(n, case, tuple(runs[v.name]), v.name)
        for case, runs in (("cold", cold), ("warm", warm), ("no-change", unchanged))
        for v in variants
    ]


#: The second config of ``--archive both|off``: the site's, with archive pages off.
ARCHIVE_OFF_CONFIG = "config-archive-off.yaml"


#: Where the archives-off variant builds, beside the site's own output and cache.
ARCHIVE_OFF_OUTPUT = "public-archive-off"
ARCHIVE_OFF_CACHE = ".publisher-cache-archive-off"


def write_archive_off_config(site: Path) -> Path:
    """Write the site's config with ``feeds.archive: false`` beside it; returns its path.

    It builds into its own output folder and cache, so that the two variants
    can run in turn without one's files counting as the other's.
    """
    text = CONFIG_YAML
    if "feeds:\n" not in text or f"  output: {OUTPUT_DIR}\n" not in text:
        raise SystemExit("error: make_corpus.CONFIG_YAML has no feeds or paths.output to change")
    text = text.replace("feeds:\n", "feeds:\n  archive: false\n", 1)
    text = text.replace(
        f"  output: {OUTPUT_DIR}\n",
        f"  output: {ARCHIVE_OFF_OUTPUT}\n  cache: {ARCHIVE_OFF_CACHE}\n",
        1,
    )
    path = site / ARCHIVE_OFF_CONFIG
    path.write_text(text, encoding="utf-8")
    return path


def _prepare_site(n: int, seed: int, keep: Path | None, tmp: Path) -> tuple[Path, CorpusInfo]:
    """Generate the corpus for N in the keep folder or the temporary one."""
    site = (keep if keep is not None else tmp) / f"site-{n}"
    if site.exists():
        config = site / "config.yaml"
        if not config.is_file() or config.read_text(encoding="utf-8") != CONFIG_YAML:
            raise SystemExit(
                f"error: {site} exists and is not a bench site; remove it "
                "or choose another --keep folder"
            )
        for name in (OUTPUT_DIR, CACHE_DIR, ARCHIVE_OFF_OUTPUT, ARCHIVE_OFF_CACHE):
            shutil.rmtree(site / name, ignore_errors=True)
    start = time.perf_counter()
    corpus = generate_corpus(n, site, seed=seed, force=True)
    print(
        f"N={n}: generated {corpus.total_bytes / 1e6:.1f} MB in "
        f"{time.perf_counter() - start:.2f} s at {site}",
        flush=True,
    )
    return site, corpus


def _print_table(results: list[CaseResult]) -> None:
    """Print one row per (N, case)."""
    header = (
        f"{'N':>7}  {'case':<10} {'variant':<13} {'wall s':>8} {'min..max s':>15} "
        f"{'posts/s':>10} {'peak RSS MB':>12}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        lo = min(x.wall_s for x in r.runs)
        hi = max(x.wall_s for x in r.runs)
        rate = r.n / r.wall_s if r.wall_s > 0 else float("inf")
        print(
            f"{r.n:>7}  {r.case:<10} {r.variant:<13} {r.wall_s:>8.3f} {f'{lo:.3f}..{hi:.3f}':>15} "
            f"{rate:>10.0f} {r.rss_mb:>12.1f}"
        )


def _print_summary(results: list[CaseResult]) -> None:
    """Print cold/warm ratios per N and the targets with PASS/MISS."""
    variants = {(r.n, r.case, r.variant): r for r in results}
    main = next(iter(dict.fromkeys(r.variant for r in results)))
    by = {(n, case): r for (n, case, variant), r in variants.items() if variant == main}
    print()
    for n in sorted({r.n for r in results}):
        cold, warm, same = by[n, "cold"], by[n, "warm"], by[n, "no-change"]
        print(
            f"N={n} ({main}): cold/warm = {cold.wall_s / warm.wall_s:.1f}x, "
            f"cold/no-change = {cold.wall_s / same.wall_s:.1f}x"
        )
        if (n, "cold", "archives off") in variants and main != "archives off":
            # Run i of one variant ran right after run i of the other: the median of
            # those pairs' ratios is steadier on a noisy machine than a ratio of medians.
            ratios = []
            for case in ("cold", "warm", "no-change"):
                on, off = variants[n, case, main], variants[n, case, "archives off"]
                pairs = [a.wall_s / b.wall_s for a, b in zip(on.runs, off.runs, strict=True)]
                spread = f"{min(pairs):.2f}..{max(pairs):.2f}"
                medians = on.wall_s / off.wall_s
                ratios.append(
                    f"{case} {statistics.median(pairs):.2f}x ({spread}; of medians {medians:.2f}x)"
                )
            print(f"N={n}: archives on / off (wall, median of paired runs): " + ", ".join(ratios))
    print()
    print(f"Targets at N={TARGET_N} ({main}):")
    if (TARGET_N, "cold") not in by:
        print(f"  not measured (add {TARGET_N} to --sizes)")
        return
    peak = max(r.max_rss_mb for r in results if r.n == TARGET_N and r.variant == main)
    checks = [
        ("cold build", by[TARGET_N, "cold"].wall_s, TARGET_COLD_S, "s"),
        ("warm build", by[TARGET_N, "warm"].wall_s, TARGET_WARM_S, "s"),
        ("peak RSS", peak, TARGET_PEAK_MB, "MB"),
    ]
    for label, value, limit, unit in checks:
        verdict = "PASS" if value < limit else "MISS"
        print(f"  {label:<11} {value:8.3f} {unit:<2} < {limit:g} {unit:<2}  {verdict}")


def _parse_sizes(text: str) -> list[int]:
    """Parse "1000,10000" into [1000, 10000]."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        msg = f"not a comma-separated list of integers: {text!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if not sizes or any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def build_command(command: str, config: Path) -> list[str]:
    """Interpreter arguments for one build: fill {config}, or append --config PATH."""
    parts = shlex.split(command)
    if any("{config}" in part for part in parts):
        return [part.replace("{config}", str(config)) for part in parts]
    return [*parts, "--config", str(config)]


def install_copy(tmp: Path) -> Path:
    """Copy the working tree's package under ``tmp`` and byte-compile it, as pip install does.

    Run from a source tree with PYTHONDONTWRITEBYTECODE set (as on this
    machine), Python would compile every module of the package again on each
    run; an installed package has its bytecode written at install time.
    Returns the folder to put on PYTHONPATH.
    """
    root = tmp / "installed"
    shutil.copytree(
        REPO_ROOT / "publisher",
        root / "publisher",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    if not compileall.compile_dir(root / "publisher", quiet=1):
        raise SystemExit("error: the package does not byte-compile")
    return root


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description="Benchmark `publisher build` on generated sites.")
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=[1000, 10_000],
        help="comma-separated post counts (default 1000,10000)",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="generate the sites in DIR/site-N and keep them"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs per case (default 5; the median is reported)"
    )
    parser.add_argument("--seed", type=int, default=42, help="corpus seed (default 42)")
    parser.add_argument(
        "--command",
        default=DEFAULT_COMMAND,
        help="interpreter arguments for the build; {config} is replaced by the config "
        'path, else "--config PATH" is appended '
        f'(default "{DEFAULT_COMMAND}"; e.g. "-c pass" to test this script)',
    )
    parser.add_argument(
        "--archive",
        choices=["on", "off", "both"],
        default="both",
        help="archive pages on (the sites' default), off, or both, compared (default both)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    print(f"python {sys.version.split()[0]} ({sys.executable}); repo {REPO_ROOT}")
    print(
        f"command: python {shlex.join(build_command(args.command, Path('SITE/config.yaml')))}; "
        f"{args.repeats} runs per case, median reported"
    )

    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="publisher-bench-") as tmp:
        env = dict(os.environ)
        package_root = install_copy(Path(tmp))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(package_root), env.get("PYTHONPATH", "")) if p
        )
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            site, corpus = _prepare_site(n, args.seed, args.keep, Path(tmp))
            variants = []
            if args.archive in ("on", "both"):
                argv_on = [sys.executable, *build_command(args.command, site / "config.yaml")]
                variants.append(Variant("archives on", argv_on, OUTPUT_DIR, CACHE_DIR))
            if args.archive in ("off", "both"):
                off = write_archive_off_config(site)
                argv_off = [sys.executable, *build_command(args.command, off)]
                variants.append(
                    Variant("archives off", argv_off, ARCHIVE_OFF_OUTPUT, ARCHIVE_OFF_CACHE)
                )
            trash = site.parent / f".trash-{site.name}"
            try:
                results.extend(bench_site(n, site, corpus, variants, env, args.repeats, trash))
            except BuildFailed as exc:
                print(
                    f"\nerror: build failed at N={n} ({exc}): {shlex.join(exc.argv)}",
                    file=sys.stderr,
                )
                print(f"(cwd {site})\n--- stderr (tail) ---\n{_tail(exc.stderr)}", file=sys.stderr)
                return 1
            finally:
                shutil.rmtree(trash, ignore_errors=True)
    _print_table(results)
    _print_summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
