"""Document loaders: each format becomes chunks that keep where they came from."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pdfs import write_pdf

from kit.services.retrieval.chunking import sections, split
from kit.services.retrieval.loaders import Document, Skip, load
from kit.settings import Retrieval, Source, TableSchema

SETTINGS = Retrieval(sources=[Source(path="docs")], chunk_size=200, chunk_overlap=40)


def chunks_of(path: Path, table: TableSchema | None = None, settings: Retrieval = SETTINGS) -> list:
    return load(Document(path, f"docs/{path.name}", table), settings, path.parent)


def test_markdown_keeps_heading_paths(tmp_path: Path) -> None:
    md = tmp_path / "returns.md"
    md.write_text(
        "# Returns\nIntro line.\n\n## Refunds\nRefunds take 5 days.\n\n### Store credit\nCredit never "
        "expires.\n\n```\n# not a heading\n```\n",
        encoding="utf-8",
    )
    found = chunks_of(md)
    assert [c.title for c in found] == ["Returns", "Returns > Refunds", "Returns > Refunds > Store credit"]
    assert found[1].text == "Returns > Refunds\nRefunds take 5 days."
    assert "# not a heading" in found[2].text
    assert found[1].location == "line 4" and found[1].source == "docs/returns.md"


def test_long_sections_split_with_overlap() -> None:
    body = "\n\n".join(f"Paragraph {i} " + "word " * 20 for i in range(6))
    pieces = split(body, 200, 40)
    assert len(pieces) > 2 and all(len(p) <= 200 for p in pieces)
    for before, after in itertools.pairwise(pieces):
        assert after.split("\n\n")[0] in before  # each piece starts with the tail of the one before
    one_huge = split("x" * 1000, 200, 40)
    assert all(len(p) <= 200 for p in one_huge) and "".join(one_huge).count("x") >= 1000


def test_sections_without_headings() -> None:
    [only] = sections("just text\n\nmore")
    assert only.path == () and only.body == "just text\n\nmore"


def test_csv_rows_become_field_value_chunks(tmp_path: Path) -> None:
    csv = tmp_path / "catalogue.csv"
    csv.write_text(
        'sku,name,category,price\nNW-1,"Tent, 2p",tents,149.00\n\nNW-2,Stove,cooking,39.50\n', encoding="utf-8"
    )
    table = TableSchema(id_column="sku", filter_columns=["category"])
    first, second = chunks_of(csv, table)
    assert first.text == "NW-1 — Tent, 2p\nsku: NW-1\nname: Tent, 2p\ncategory: tents\nprice: 149.00"
    assert first.metadata == {"category": "tents", "row_id": "NW-1"}
    assert (first.location, second.location) == ("row 2", "row 4")
    assert first.id != second.id and first.id == chunks_of(csv, table)[0].id  # stable


def test_html_main_text_without_scripts_or_navigation(tmp_path: Path) -> None:
    page = tmp_path / "shipping.html"
    page.write_text(
        "<html><head><title>Shipping</title><script>var secret = 1;</script></head><body>"
        "<nav>Home | Shop | Cart</nav><main><h1>Shipping</h1><p>We ship in <b>2 days</b>.</p>"
        "<ul><li>Free over $75</li></ul></main><footer>© Example</footer></body></html>",
        encoding="utf-8",
    )
    [chunk] = chunks_of(page)
    assert chunk.title == "Shipping"
    assert "We ship in 2 days ." in chunk.text and "Free over $75" in chunk.text
    assert "secret" not in chunk.text and "Cart" not in chunk.text and "©" not in chunk.text


def test_pdf_text_per_page(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "warranty-terms.pdf", ["Warranty lasts 2 years.", "Claims by e-mail."])
    first, second = chunks_of(pdf)
    assert (first.location, second.location) == ("page 1", "page 2")
    assert "Warranty lasts 2 years." in first.text and "Claims by e-mail." in second.text
    assert first.title == "Warranty Terms, page 1"


def test_faq_jsonl_one_chunk_per_entry(tmp_path: Path) -> None:
    faq = tmp_path / "faq.jsonl"
    faq.write_text(
        '{"question": "Do you ship abroad?", "answer": "Only to Canada.", "category": "shipping"}\n\n'
        '{"question": "Gift wrap?", "answer": "Yes, $5."}\n',
        encoding="utf-8",
    )
    first, second = chunks_of(faq)
    assert first.text == "Q: Do you ship abroad?\nA: Only to Canada." and first.metadata == {"category": "shipping"}
    assert second.location == "line 3"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blob.txt", b"\x00\x01\x02binary", "binary file"),
        ("latin.md", "# Caf\xe9\n".encode("latin-1"), "not UTF-8 text (line 1)"),
        ("broken.pdf", b"%PDF-1.4\nthis is not a pdf", "corrupt or unreadable PDF"),
        ("image.png", b"\x89PNG....", "unsupported file type '.png'"),
        ("faq.jsonl", b'{"q": 1}\n', "line 1 is not a FAQ entry"),
    ],
)
def test_bad_files_are_skipped_with_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(Skip, match=reason.replace("(", r"\(").replace(")", r"\)")):
        chunks_of(path)


def test_encrypted_pdf_is_skipped(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "secret.pdf", ["hidden"], password="pw")
    with pytest.raises(Skip, match="encrypted PDF"):
        chunks_of(pdf)


def test_oversized_file_is_skipped(tmp_path: Path) -> None:
    big = tmp_path / "huge.txt"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    with pytest.raises(Skip, match="50 MB is over the 20 MB limit"):
        chunks_of(big)


def test_symlink_outside_the_domain_is_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("# secret\npasswords", encoding="utf-8")
    domain = tmp_path / "domain"
    domain.mkdir()
    (domain / "link.md").symlink_to(outside)
    with pytest.raises(Skip, match="symlink points outside the domain folder"):
        load(Document(domain / "link.md", "link.md"), SETTINGS, domain)


def test_pdf_whose_page_tree_loops_is_skipped(tmp_path: Path) -> None:
    """A PDF whose page tree refers to itself is skipped with a reason, not a traceback."""
    pdf = write_pdf(tmp_path / "loop.pdf", ["one page"])
    data = pdf.read_bytes()
    pdf.write_bytes(data.replace(b"/Kids [4 0 R]", b"/Kids [2 0 R]"))
    assert b"/Kids [2 0 R]" in pdf.read_bytes()
    with pytest.raises(Skip, match="corrupt or unreadable PDF"):
        chunks_of(pdf)
