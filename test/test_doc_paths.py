"""Every documentation path named in a comment or docstring of sage_ros/, scripts/ and bench/ exists, so a pointer
such as `docs/design.md` or `models/reports/tinyvae/COMMANDS_train.md` never leads nowhere (ten comments used to
point at a DESIGN.md that was not in the repository)."""
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("sage_ros", "scripts", "bench")
# a document (markdown, or a figure a document shows) by its path in the repository ...
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|models|test|scripts|bench)/[\w./-]*[\w-]\.(?:md|png))\b")
# ... or a top-level document named in capitals (README.md, BENCHMARKS.md)
TOP_DOC = re.compile(r"(?<![\w./-])([A-Z][A-Z_]*\.md)\b")


def comments_and_docstrings(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".sh":
        return [line[line.index("#"):] for line in text.splitlines() if "#" in line]
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    found = [t.string for t in tokens if t.type == tokenize.COMMENT]
    skip = (tokenize.NL, tokenize.COMMENT)
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.STRING:
            continue
        before = next((t for t in reversed(tokens[:i]) if t.type not in skip), None)
        after = next((t for t in tokens[i + 1:] if t.type not in skip), None)
        statement_start = before is None or before.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                             tokenize.ENCODING)
        if statement_start and after is not None and after.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            found.append(tok.string)  # a string that is a whole statement: a docstring
    return found


def doc_paths(text: str) -> set[str]:
    return set(REPO_PATH.findall(text)) | set(TOP_DOC.findall(text))


def named_paths() -> list[tuple[str, str]]:
    pairs = set()
    for part in SCANNED:
        for path in sorted((REPO / part).rglob("*")):
            if path.suffix in (".py", ".sh") and "__pycache__" not in path.parts:
                for text in comments_and_docstrings(path):
                    pairs |= {(str(path.relative_to(REPO)), named) for named in doc_paths(text)}
    return sorted(pairs)


def test_the_scan_sees_comments_and_docstrings_only(tmp_path):
    path = tmp_path / "example.py"
    path.write_text('"""See docs/a.md."""\nx = "docs/b.md"  # and README.md\n\ndef f():\n    """docs/c.md"""\n'
                    "y = f'<run_dir>/report.md'\n")
    found = set().union(*map(doc_paths, comments_and_docstrings(path)))
    assert found == {"docs/a.md", "README.md", "docs/c.md"}


def test_at_least_the_design_doc_is_named():
    assert ("sage_ros/__init__.py", "docs/design.md") in named_paths()


@pytest.mark.parametrize("source,named", named_paths())
def test_named_doc_path_exists(source, named):
    assert (REPO / named).exists(), f"{source} names {named}, which is not in the repository"
