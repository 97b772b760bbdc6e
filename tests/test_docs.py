"""The documentation: every local link in README.md and docs/*.md resolves, and no tracked text file refers to work
items, people or tools outside the project (the project speaks of itself only)."""
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()

# Pages the README links that are written on other branches of the same change. Before they are merged none of
# them exists and their links are allowed to dangle; once any of them exists (the merge has happened) every one must.
PAGES_FROM_OTHER_BRANCHES = {"docs/guarantees.md", "docs/transfer-data.md", "docs/suite.md", "docs/taxonomies.md"}

# References to things outside the project: numbered work items, the tools and machines of whoever works on it.
OUTSIDE_REFERENCES = re.compile("|".join([
    r"\bissues?\s*#?\d",                       # "issue 15", "issue13", "issues #3"
    r"\bwork items?\b",
    r"\bdevelopers'? guide\b",
    r"\bengineers?\b",
    r"\bsessions?\s+lent\b", r"\blent\s+(?:the|a|an)\s+\S+\s+machine\b",
    r"\bdevice tool\b", r"\bgpu-kit\b", r"\bworkplace\b", r"\bfarm-\w",
    r"\brun\(command=",                        # the call syntax of a tool that is not fastload's
    r"\bcoord interfaces\b",
]), re.IGNORECASE)
CEO = re.compile(r"\bCEO\b")                    # case-sensitive: "calceolus" is a plant


def tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        path = REPO / name
        if not name or name == THIS or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:               # binary (images)
            continue
        yield name, data.decode("utf-8", errors="replace")


def test_no_references_outside_the_project():
    hits = [f"{name}:{n}: {line.strip()[:100]}"
            for name, text in tracked_text_files()
            for n, line in enumerate(text.splitlines(), 1)
            if OUTSIDE_REFERENCES.search(line) or CEO.search(line)]
    assert not hits, "references outside the project:\n" + "\n".join(hits)


@pytest.mark.parametrize("line, flagged", [
    ("before the changes of issue 11 (1 image)", True), ("# Issue 15 (the demo shows effects)", True),
    ("(issue 13.4)", True), ("a session lent the H200 machine", True), ("engineer det writes it", True),
    ('run(command="bash x.sh", carry=[".gpucarry"])', True), ("developers' guide", True),
    ("the issue of missing files", False), ("start_new_session=True", False), ("would silently load nothing", False),
    ("Cypripedium calceolus", False), ("lent itself", False), ("feature engineering", False),
])
def test_the_pattern_flags_references_not_words(line, flagged):
    assert bool(OUTSIDE_REFERENCES.search(line) or CEO.search(line)) == flagged


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def local_links(page: Path):
    """(target path relative to the repository, anchor) of each relative link in a markdown page."""
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        yield (page.parent / path).resolve().relative_to(REPO).as_posix(), anchor


def pages():
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def test_every_local_link_resolves():
    merged = any((REPO / p).exists() for p in PAGES_FROM_OTHER_BRANCHES)
    missing = [f"{page.relative_to(REPO)} -> {target}" for page in pages() for target, _ in local_links(page)
               if not (REPO / target).exists() and (merged or target not in PAGES_FROM_OTHER_BRANCHES)]
    assert not missing, "links to missing files:\n" + "\n".join(missing)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_anchor_names_a_heading():
    bad = []
    for page in pages():
        for target, anchor in local_links(page):
            if anchor and (REPO / target).is_file():
                headings = {slug(h) for h in re.findall(r"^#+ (.+)$", (REPO / target).read_text(), re.MULTILINE)}
                if anchor not in headings:
                    bad.append(f"{page.relative_to(REPO)} -> {target}#{anchor}")
    assert not bad, "anchors without a heading:\n" + "\n".join(bad)


def test_the_readme_links_every_docs_page():
    linked = {target for target, _ in local_links(REPO / "README.md")}
    pages_here = {p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")}
    assert pages_here <= linked, f"docs pages the README does not link: {sorted(pages_here - linked)}"
    assert PAGES_FROM_OTHER_BRANCHES <= linked


def test_the_readme_keeps_the_commands_ci_runs():
    readme = (REPO / "README.md").read_text()
    assert "./setup.sh && .venv/bin/fastload demo" in readme
    assert "./setup.sh && .venv/bin/python -m pytest tests" in readme
    assert ".venv/bin/python -m pytest tests" in (REPO / ".ci" / "run").read_text()
