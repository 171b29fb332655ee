"""The README stays a newcomer's page, and the user docs describe the product as it is.

- its layout map names every package of the repository, and every path it names exists;
- it stays short (the rest lives in docs/);
- no user doc cites an issue number: history belongs in git, not in the docs.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_LINES = 220
CODE_ROOTS = ("pipeline", "assets", "resources", "simulator", "tests")
OTHER_FOLDERS = ("analytics/", "scripts/", "docs/", "deploy/")
ISSUE = re.compile(r"\bissues?\s*#?\d+|\(issue", re.IGNORECASE)
MAP_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def layout_paths() -> list[str]:
    """The paths in the first column of the README's "## Layout" table."""
    lines = README.read_text().splitlines()
    start = lines.index("## Layout") + 1
    section = []
    for line in lines[start:]:
        if line.startswith("## "):
            break
        section.append(line)
    return [m.group(1) for line in section if (m := MAP_ROW.match(line))]


def packages() -> set[str]:
    """Every folder of the code roots that holds a .py file, as ``folder/``, plus the others."""
    found = set(OTHER_FOLDERS)
    for root in CODE_ROOTS:
        for path in (ROOT / root).rglob("*.py"):
            folder = path.parent.relative_to(ROOT)
            if any(part.startswith((".", "__")) for part in folder.parts):
                continue  # __pycache__, hidden folders
            found.add(folder.as_posix() + "/")
    return found


def user_docs() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_the_layout_map_names_every_package() -> None:
    named = set(layout_paths())
    missing = sorted(packages() - named)
    assert not missing, f"README.md's layout map does not name: {', '.join(missing)}"


def test_every_path_the_layout_map_names_exists() -> None:
    paths = layout_paths()
    assert paths, "README.md has no '## Layout' table"
    gone = [p for p in paths if not (ROOT / p).exists()]
    assert not gone, f"README.md's layout map names paths that do not exist: {', '.join(gone)}"


def test_the_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, (f"README.md has {lines} lines (at most {MAX_LINES}); move "
                                "detail into docs/")


def test_no_user_doc_cites_an_issue() -> None:
    cited = [f"{doc.relative_to(ROOT)}:{n}: {line.strip()}"
             for doc in user_docs()
             for n, line in enumerate(doc.read_text().splitlines(), 1) if ISSUE.search(line)]
    assert not cited, "user docs describe the product, not its issues:\n" + "\n".join(cited)


def test_the_issue_pattern_catches_what_it_should() -> None:
    for text in ("see issue 12", "(issue 8)", "Issue 1 says", "issues 3 and 4", "issue #5"):
        assert ISSUE.search(text), text
    for text in ("a known issue", "the scaling issue", "issued 3 tokens"):
        assert not ISSUE.search(text), text
