"""The static leaderboard site (leaderboards/site.py), checked as files and in headless Chromium.

The browser tests skip when Chromium is not installed, unless ``POISONBENCH_REQUIRE_BROWSER=1``
(as in CI), which makes them fail instead.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from matplotlib import image

from poisonbench.leaderboards.query import leaderboard
from poisonbench.leaderboards.site import build_site, slug
from poisonbench.leaderboards.store import Store

REPO = Path(__file__).resolve().parent.parent
PAPER_STORE = REPO / "results" / "paper-repro"
PAPER_CAMPAIGNS = ["paper-learned-l2", "paper-mnist-mtp-lr"]
HOSTILE = "<script>alert(1)</script>"
HOSTILE_ERROR = "attack 'x': ValueError: <img src=x onerror=alert(2)>"
#: An attribute that would fetch from the network (an absolute or protocol-relative URL).
REMOTE = re.compile(r"""(?:\b(?:src|href)\s*=|url\()\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _row(trial_id, attack, defence, budget, acc, seed, status="ok", kind="checkpoint", **extra):
    return {
        "campaign": "tiny",
        "trial_id": trial_id,
        "kind": kind,
        "status": status,
        "error": HOSTILE_ERROR if status == "failed" else None,
        "dataset_label": "blobs",
        "learner_label": "ridge",
        "defence_label": defence,
        "attack_label": attack,
        "budget_spec": None if kind == "trace" else str(budget),
        "budget": None if kind == "trace" else budget,
        "n_poisons": budget,
        "n_train": 100,
        "poison_fraction": budget / 100,
        "test_accuracy": acc,
        "seed": seed,
        "config": '{"attack": {"name": "x"}}',
        "poisonbench_version": "9.9.9",
        "host": "test-host",
        "code_hash": "abcdef0123456789",
        **extra,
    }


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """A store of one campaign: attacks alpha (strongest), beta and a hostile label, two
    defences, budgets 0 and 10, two seeds; one failed trial whose error is hostile too."""
    root = tmp_path_factory.mktemp("store")
    store = Store(root)
    accuracy = {"alpha": 0.6, "beta": 0.8, HOSTILE: 0.7}
    n = 0
    for defence, shift in (("none", 0.0), ("trim", 0.1)):
        for attack, acc in accuracy.items():
            for seed in (0, 1):
                n += 1
                trial = f"{n:016x}"
                rows = [
                    _row(trial, attack, defence, 0, 0.95, seed),
                    _row(trial, attack, defence, 10, acc + shift + 0.01 * seed, seed, max_loss_diff=0.5),
                    _row(trial, attack, defence, 5, None, seed, kind="trace", max_loss_diff=1.0),
                ]
                store.write_trial("tiny", trial, rows)
    store.write_trial("tiny", "f" * 16, [_row("f" * 16, "beta", "none", 10, None, 2, status="failed")])
    return root


@pytest.fixture(scope="module")
def tiny_site(tiny_store, tmp_path_factory) -> Path:
    return build_site(Store(tiny_store).read(), tmp_path_factory.mktemp("site"), title="tiny board")


def test_site_files_downloads_and_relative_links(tiny_site, tiny_store):
    out = tiny_site.parent
    campaign = out / "campaigns" / slug("tiny")
    for path in (out / "style.css", out / "rows.csv", out / "rows.parquet", campaign / "index.html"):
        assert path.is_file(), path
    rows = Store(tiny_store).read()
    assert pq.read_table(campaign / "rows.parquet").num_rows == rows.num_rows
    assert pq.read_table(out / "rows.parquet").schema.names == rows.schema.names
    index = tiny_site.read_text()
    assert 'href="campaigns/tiny/index.html"' in index and 'href="rows.csv"' in index
    page = (campaign / "index.html").read_text()
    assert 'href="../../style.css"' in page and 'href="rows.parquet"' in page
    assert page.count("<svg") >= 2 and 'id="matrix"' in page  # figures; two defences: a matrix


def test_labels_and_errors_are_text_never_markup(tiny_site):
    pages = [tiny_site, *tiny_site.parent.glob("campaigns/*/index.html")]
    for path in pages:
        text = path.read_text()
        assert HOSTILE not in text and "<img" not in text
        assert text.count("<script") == 1  # the site's own sorting script
    page = pages[1].read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "onerror=alert(2)&gt;" in page


def test_nothing_is_fetched_from_the_network(tiny_site):
    out = tiny_site.parent
    for path in [*out.rglob("*.html"), out / "style.css"]:
        text = path.read_text()
        assert not REMOTE.search(text), path
        assert "@import" not in text


def test_ranks_seeds_and_failures_appear_in_the_page(tiny_site):
    rows = _ranked_rows(_campaign_page(tiny_site).read_text())
    ten = {(r["attack"].split(" ", 1)[1], r["defence"]): r for r in rows if r["budget"] == "10"}
    assert ten[("alpha", "none")]["rank"] == "1" and ten[(HOSTILE, "none")]["rank"] == "2"
    assert ten[("beta", "none")]["rank"] == "3" and ten[("beta", "none")]["failed"] == "1"
    assert ten[("alpha", "none")]["test_accuracy"] == "0.6050 ± 0.0050"
    assert {r["rank"] for r in rows if r["budget"] == "0"} == {"–"}


# -- in the browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Run headless Chromium on a file: ``browser(page, *flags)`` returns its stdout."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("POISONBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium not found, and POISONBENCH_REQUIRE_BROWSER=1 requires the browser tests")
        pytest.skip("chromium not found (set POISONBENCH_REQUIRE_BROWSER=1 to fail instead)")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(page: Path, *flags: str) -> str:
        command = [
            exe,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host name resolves
            *flags,
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run


def test_the_browser_runs_the_script_and_shows_the_ranks(browser, tiny_site):
    dom = browser(_campaign_page(tiny_site), "--dump-dom")
    assert 'data-sortable="ready"' in dom  # the sorting script ran
    rows = _ranked_rows(dom)
    assert ("1", "alpha", "10") in {(r["rank"], r["attack"].split(" ", 1)[1], r["budget"]) for r in rows}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and HOSTILE not in dom
    assert dom.count("<script") == 1


def test_clicking_a_header_sorts_the_table(browser, tiny_site, tmp_path):
    page = _campaign_page(tiny_site)
    clicked = page.parent / "clicked.html"
    click = (
        "<script>var th = document.querySelector('table.ranked thead th.metric-column');"
        "th.click(); th.click();</script></body>"
    )
    clicked.write_text(page.read_text().replace("</body>", click))
    rows = _ranked_rows(browser(clicked, "--dump-dom"))[:6]  # the first section's table
    values = [float(r["test_accuracy"].split(" ")[0]) for r in rows]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(0.605)


def test_screenshots_are_not_blank(browser, tiny_site, tmp_path):
    for name, page in (("index", tiny_site), ("campaign", _campaign_page(tiny_site))):
        shot = tmp_path / f"{name}.png"
        browser(page, f"--screenshot={shot}", "--window-size=1280,2000")
        pixels = image.imread(shot)[..., :3]
        colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert pixels.std() > 0.05 and len(colours) > 50, name


def test_the_committed_paper_store_in_the_browser(browser, tmp_path):
    """``poisonbench leaderboard site`` on the whole committed store: every campaign is on the
    index page, a campaign page's ranks are the leaderboard's, and the store is left as it was."""
    from poisonbench.cli.main import main

    before = sorted((p, p.stat().st_mtime_ns) for p in PAPER_STORE.rglob("*"))
    main(["leaderboard", "site", str(tmp_path / "site"), "--store", str(PAPER_STORE)])
    index = tmp_path / "site" / "index.html"
    dom = browser(index, "--dump-dom")
    assert all(f'href="campaigns/{name}/index.html"' in dom for name in Store(PAPER_STORE).campaigns())
    table = Store(PAPER_STORE).read(PAPER_CAMPAIGNS)
    page = index.parent / "campaigns" / "paper-learned-l2" / "index.html"
    shown = {
        (r["attack"].split(" ", 1)[1], r["budget"], r["defence"]): r["rank"]
        for r in _ranked_rows(browser(page, "--dump-dom"))
    }
    expected = leaderboard(table.filter(_is_campaign(table, "paper-learned-l2")))
    assert len(shown) == len(expected)
    for e in expected:
        rank = "–" if e["rank"] is None else str(e["rank"])
        assert shown[(e["attack_label"], e["budget_spec"], e["defence_label"])] == rank
    after = sorted((p, p.stat().st_mtime_ns) for p in PAPER_STORE.rglob("*"))
    assert after == before  # read only


def _is_campaign(table, name):
    import pyarrow.compute as pc

    return pc.equal(table["campaign"], name)


def _campaign_page(index: Path) -> Path:
    return index.parent / "campaigns" / slug("tiny") / "index.html"


class _RankedTables(html.parser.HTMLParser):
    """The body rows of every ``table.ranked`` as dicts (header -> cell text), each with the
    defence of its section (the last part of the section title)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.headers: list[str] = []
        self.section = ""
        self._in: str | None = None
        self._text = ""
        self._cells: list[str] = []
        self._depth = 0
        self._ranked = False

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "table":
            self._ranked = "ranked" in classes
            self.headers = []
        elif tag in ("h2", "th", "td") and self._in is None and (tag == "h2" or self._ranked):
            self._in, self._text = tag, ""
        elif tag == "details" and self._in == "td":
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "details" and self._depth:
            self._depth -= 1
        elif tag == self._in:
            text = " ".join(self._text.split())
            if tag == "h2":
                self.section = text.rsplit(" / ", 1)[-1]
            elif tag == "th":
                self.headers.append(text.rstrip(" ↕▲▼"))
            else:
                self._cells.append(text)
            self._in = None
        elif tag == "tr" and self._ranked and self._cells:
            self.rows.append({**dict(zip(self.headers, self._cells)), "defence": self.section})
            self._cells = []

    def handle_data(self, data):
        if self._in is not None and not self._depth:
            self._text += data


def _ranked_rows(document: str) -> list[dict[str, str]]:
    parser = _RankedTables()
    parser.feed(document)
    return parser.rows
