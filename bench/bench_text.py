"""Time the preflight counting units on post-sized texts: median of many runs, in microseconds.

Run: .venv/bin/python bench/bench_text.py [runs]
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from collections.abc import Callable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from twitter_text import parse_tweet

from omnipost.preflight.facets import detect_facets
from omnipost.preflight.text import grapheme_len, threads_length, twitter_weighted_length, utf16_len

MIXED = (
    "Big news today! We shipped v2.0 of our app 🎉🚀 — faster sync, dark mode, and a new editor. "
    "Read the changelog at https://example.com/blog/v2 and tell us what you think. Thanks to everyone who "
    "tested the betas (you know who you are 🙏). Next up: offline mode, e.g. for flights… stay tuned! "
    "日本語版も近日公開します。👨‍👩‍👧‍👦 Questions? Ask @support.example.com or see example.org/faq #launch"
)
ASCII = (
    "Omnipost checks one post against every platform before publishing. It counts text the way each platform "
    "does, flags media that will be rejected, and splits long posts into threads at sentence boundaries. "
    "Docs at https://example.com/docs and a demo on example.org/demo. Try it and tell us what breaks, please!!"
)
CJK = "故人西辞黄鹤楼，烟花三月下扬州。孤帆远影碧空尽，唯见长江天际流。" * 10
EMOJI = "🎉👍🏽🇯🇵❤️👨‍👩‍👧‍👦 " * 60

TEXTS = {
    "mixed-280": MIXED[:280],
    "mixed-300": MIXED[:300],
    "ascii-280": ASCII[:280],
    "cjk-280": CJK[:280],
    "emoji-280": EMOJI[:280],
}


def median_us(fn: Callable[[str], object], text: str, runs: int) -> float:
    """Median wall time of fn(text) in microseconds over `runs` calls (after a warm-up)."""
    for _ in range(50):
        fn(text)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn(text)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    funcs: dict[str, Callable[[str], object]] = {
        "grapheme_len": grapheme_len,
        "twitter_weighted_length": twitter_weighted_length,
        "threads_length": threads_length,
        "utf16_len": utf16_len,
        "detect_facets": detect_facets,
        "library parse_tweet (reference)": parse_tweet,
    }
    width = max(map(len, funcs))
    print(f"median of {runs} runs, µs per call; text lengths in code points")
    print(" " * width + "".join(f"{name:>12}" for name in TEXTS))
    print(" " * width + "".join(f"{len(t):>12}" for t in TEXTS.values()))
    for fname, fn in funcs.items():
        cells = "".join(f"{median_us(fn, t, runs):>12.1f}" for t in TEXTS.values())
        print(f"{fname:<{width}}{cells}")


if __name__ == "__main__":
    main()
