#!/usr/bin/env python3
"""Open a run's TensorBoard in a headless browser: screenshots of the dashboards, and checks of what they show.

    python scripts/check_tensorboard.py --logdir runs/demo/tensorboard --out build/tensorboard_check

Starts `tensorboard --logdir LOGDIR --host 127.0.0.1` on a free port, asks its HTTP API what the
dashboards hold, saves one PNG per dashboard with Debian's chromium in headless mode
(`apt-get install chromium`; Ethiopic text needs a font such as fonts-sil-abyssinica), stops
TensorBoard, prints a JSON report and exits 1 when a check fails. The checks:

- custom_scalars_first_losses: the custom-scalars layout's first category charts train/loss and eval/loss;
- layout_tags_exist: every layout regex matches a logged scalar (no empty chart);
- no_per_reason_drop_plots: no `data/dropped/*` scalars (drops are one total and a text table);
- audio_labelled: every test_sentences/* clip is titled with its sentence;
- config_text: the resolved config is logged as text;
- one_run: the logdir holds one run (no empty hparams sub-run).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DASHBOARDS = ("custom_scalars", "timeseries", "audio", "text")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read().decode("utf-8"))


def tensorboard_command(logdir: Path, port: int) -> list[str]:
    exe = Path(sys.executable).parent / "tensorboard"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "tensorboard.main"]
    # --load_fast=false: the Python data loader, which needs no separate data-server binary.
    return base + ["--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port), "--load_fast=false",
                   "--reload_interval", "1"]


def wait_for_data(base: str, deadline: float) -> None:
    """Until the server answers and has read scalars (it loads the event files in the background)."""
    while time.monotonic() < deadline:
        try:
            if any(get_json(f"{base}/data/plugin/scalars/tags").values()):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{base}: TensorBoard did not serve any scalars in time")


def checks(base: str) -> dict[str, tuple[bool, str]]:
    runs = get_json(f"{base}/data/runs")
    scalar_tags = {tag for tags in get_json(f"{base}/data/plugin/scalars/tags").values() for tag in tags}
    layout = get_json(f"{base}/data/plugin/custom_scalars/layout")
    audio = {tag: info for tags in get_json(f"{base}/data/plugin/audio/tags").values() for tag, info in tags.items()}
    text_tags = {tag for tags in get_json(f"{base}/data/plugin/text/tags").values() for tag in tags}

    out: dict[str, tuple[bool, str]] = {}
    categories = layout.get("category", [])
    first = categories[0] if categories else {}
    first_regexes = [r for chart in first.get("chart", []) for r in chart.get("multiline", {}).get("tag", [])]
    first_tags = {t for t in scalar_tags if any(re.search(r, t) for r in first_regexes)}
    out["custom_scalars_first_losses"] = ({"train/loss", "eval/loss"} <= first_tags,
                                          f"first category {first.get('title')!r} charts {sorted(first_tags)}")
    empty = [chart["title"] for c in categories for chart in c.get("chart", [])
             if not any(re.search(r, t) for r in chart.get("multiline", {}).get("tag", []) for t in scalar_tags)]
    out["layout_tags_exist"] = (bool(categories) and not empty, f"charts without data: {empty}")
    per_reason = sorted(t for t in scalar_tags if t.startswith("data/dropped/"))
    out["no_per_reason_drop_plots"] = (not per_reason, f"per-reason drop scalars: {per_reason}")
    clips = {t: info for t, info in audio.items() if t.startswith("test_sentences/")}
    unlabelled = [t for t, info in clips.items() if info["displayName"] in ("", t)]
    out["audio_labelled"] = (bool(clips) and not unlabelled,
                             f"{len(clips)} clip tag(s): {[info['displayName'] for info in clips.values()]}; "
                             f"unlabelled {unlabelled}")
    out["config_text"] = (any(t.startswith("run/config") for t in text_tags), f"text tags {sorted(text_tags)}")
    out["one_run"] = (len(runs) == 1, f"runs {runs}")
    return out


def screenshot(browser: str, url: str, png: Path, size: str) -> None:
    # --no-sandbox: chromium refuses to run as root otherwise (containers, CI); the page is local.
    # --virtual-time-budget lets the page's scripts fetch and draw before the shot is taken.
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={size}",
           "--virtual-time-budget=5000", f"--screenshot={png}", url]
    subprocess.run(cmd, check=True, capture_output=True, timeout=90)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"{browser} wrote no screenshot for {url}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, type=Path, help="a run's TensorBoard folder (OUTPUT_DIR/tensorboard)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs and report.json")
    parser.add_argument("--window-size", default="1400,1100")
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds to wait for TensorBoard to load the logs")
    parser.add_argument("--no-screenshots", action="store_true", help="only the HTTP checks (no browser needed)")
    parser.add_argument("--dashboards", nargs="+", choices=DASHBOARDS, default=list(DASHBOARDS),
                        help="dashboards to screenshot (default: all)")
    args = parser.parse_args(argv)

    if not args.logdir.is_dir():
        print(f"--logdir {args.logdir}: no such folder", file=sys.stderr)
        return 2
    browser = None if args.no_screenshots else next((b for b in BROWSERS if shutil.which(b)), None)
    if not args.no_screenshots and browser is None:
        print("no chromium found: apt-get install -y chromium (or pass --no-screenshots)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(args.out / "tensorboard.log", "w")
    server = subprocess.Popen(tensorboard_command(args.logdir, port), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_data(base, time.monotonic() + args.timeout)
        time.sleep(1.5)  # one more reload: audio and text are read after the scalars
        results = checks(base)
        shots = []
        if browser:
            for name in args.dashboards:
                png = args.out / f"{name}.png"
                screenshot(browser, f"{base}/#{name}", png, args.window_size)
                shots.append(str(png))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    report = {"logdir": str(args.logdir), "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in results.items()},
              "screenshots": shots}
    (args.out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
