"""Every relative link in the README, the user guides, the research notes and the examples' READMEs resolves."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PAGES = sorted(
    {p for p in [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "INFERENCE.md"] if p.is_file()}
    | set((ROOT / "docs").rglob("*.md"))
    | set((ROOT / "examples").rglob("README.md"))
)


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    links = [m.group(1) for m in LINK.finditer(text)]
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^\{\{", link)]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    missing = []
    for link in relative_links(page):
        target = (page.parent / link.split("#", 1)[0]).resolve()
        if not target.exists():
            missing.append(link)
    assert not missing, f"{page.relative_to(ROOT)} links to missing paths: {missing}"


def test_the_check_sees_links():
    readme_links = relative_links(ROOT / "README.md")
    assert readme_links and any(link.startswith("docs/") for link in readme_links)
