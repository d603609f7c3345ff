"""Every relative link and image of the project's markdown (README.md, docs/,
each recipe's RESULTS.md and README.md) points to a file that exists, and every
``#anchor`` to a heading of its target, slugged as GitHub does. No network:
links with a scheme (https:, mailto:) are left alone."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\n[ \t]*\n).)*?\1", re.S)  # within a paragraph
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
# [text](target "title") and ![alt](target); the text may hold one level of brackets and line breaks
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*(<[^>\n]*>|\S+)", re.M)
HTML_TARGET = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def project_markdown(root: Path = ROOT) -> list[Path]:
    """The markdown a reader follows links in: README.md, docs/, egs/<recipe>/{RESULTS,README}.md."""
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    files += sorted(root.glob("egs/*/RESULTS.md")) + sorted(root.glob("egs/*/README.md"))
    return [f for f in files if f.is_file()]


def blank(text: str, start: int, end: int) -> str:
    """``text`` with [start, end) replaced by spaces, its line breaks kept (offsets stay valid)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def without_code(text: str) -> str:
    """The markdown with fenced blocks, code spans and HTML comments blanked out."""
    lines, fence = text.split("\n"), None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if fence is None:
            if not m:
                continue
            fence = m.group(1)
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip().strip(fence[0]):
            fence = None
        lines[i] = " " * len(line)
    text = "\n".join(lines)
    for pattern in (HTML_COMMENT, CODE_SPAN):
        for m in reversed(list(pattern.finditer(text))):
            text = blank(text, m.start(), m.end())
    return text


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text lower-cased, punctuation
    but '-' and '_' dropped, spaces as '-' (a repeated slug gets -1, -2, ... in anchors())."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = unicodedata.normalize("NFC", text).lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor of a markdown text: its headings' slugs (repeats numbered) and HTML name/id."""
    found, seen = set(), {}
    plain = without_code(text)
    for line, plain_line in zip(text.split("\n"), plain.split("\n")):
        if not HEADING.match(plain_line):  # a heading outside fenced blocks; its text as written
            continue
        slug = github_slug(HEADING.match(line).group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    found.update(HTML_ANCHOR.findall(plain))
    return found


def link_targets(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link, image and link definition outside code."""
    plain = without_code(text)
    found = [(m.start(), m.group(1)) for pattern in (INLINE_LINK, REFERENCE_DEF, HTML_TARGET)
             for m in pattern.finditer(plain)]
    return [(plain.count("\n", 0, at) + 1, target.strip("<>")) for at, target in sorted(found)]


def broken_links(text: str, source: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of ``text``, the contents of ``source``:
    'file:line: target: why' for a missing file or folder, a missing anchor, or a
    target outside the checkout."""
    problems = []
    for line, target in link_targets(text):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # a URL: not checked here (no network)
        path_part, _, anchor = target.partition("#")
        where = f"{source.relative_to(root) if source.is_relative_to(root) else source}:{line}: {target}"
        if path_part:
            dest = (source.parent / unquote(path_part)).resolve()
            if not dest.is_relative_to(root.resolve()):
                problems.append(f"{where}: points outside the checkout")
                continue
            if not dest.exists():
                problems.append(f"{where}: no such file or folder {dest.relative_to(root.resolve())}")
                continue
        else:
            dest = source
        if anchor:
            if dest.is_dir() or dest.suffix.lower() != ".md":
                problems.append(f"{where}: an anchor into {dest.name}, which is no markdown file")
            elif unquote(anchor).lower() not in anchors(dest.read_text() if dest != source else text):
                problems.append(f"{where}: no heading with the anchor '#{anchor}' in {dest.name}")
    return problems


def test_github_slugs_of_headings():
    assert github_slug("Measure: the paper protocol against this project's settings") == \
        "measure-the-paper-protocol-against-this-projects-settings"
    assert github_slug("Job runners (cmd.sh)") == "job-runners-cmdsh"
    assert github_slug("EER (%) per method, mean ± sd over seeds 0, 1") == "eer--per-method-mean--sd-over-seeds-0-1"
    assert github_slug("The [noisy-label](x.md) benchmark") == "the-noisy-label-benchmark"
    assert github_slug("purl_clean, `--nj`") == "purl_clean---nj"
    assert anchors("# A\n## B\n## B\n```\n# not a heading\n```\n## `code` here\n") == \
        {"a", "b", "b-1", "code-here"}


def test_the_checker_finds_planted_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## Job runners (cmd.sh)\n")
    (tmp_path / "figure.png").write_bytes(b"")
    source = tmp_path / "docs" / "page.md"
    text = ("# Page\n\nGood: [other](other.md), [a section](other.md#job-runners-cmdsh), [here](#page),\n"
            "![figure](../figure.png), [a link\nover two lines](other.md), [web](https://example.org/x#y).\n"
            "`[in code](missing.md)` and\n```\n[in a block](missing.md)\n```\n"
            "Bad: [gone](missing.md), ![no image](../nothing.png \"title\"),\n"
            "[wrong anchor](other.md#job-runners), [no such here](#nowhere), [out](../../x.md)\n")
    source.write_text(text)
    problems = broken_links(text, source, tmp_path)
    assert [p.split(": ", 2)[:2] for p in problems] == [
        ["docs/page.md:10", "missing.md"], ["docs/page.md:10", "../nothing.png"],
        ["docs/page.md:11", "other.md#job-runners"], ["docs/page.md:11", "#nowhere"], ["docs/page.md:11", "../../x.md"]]
    assert "no heading with the anchor '#job-runners' in other.md" in problems[2]


def test_the_project_markdown_is_found():
    names = {str(f.relative_to(ROOT)) for f in project_markdown()}
    assert {"README.md", "docs/method.md", "egs/mini/RESULTS.md"} <= names


@pytest.mark.parametrize("doc", project_markdown(), ids=lambda f: str(f.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc):
    problems = broken_links(doc.read_text(), doc)
    assert not problems, "broken links:\n" + "\n".join(problems)
