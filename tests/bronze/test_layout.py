"""Lake layout: deterministic, Hive-style, safe for any table name."""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.bronze.layout import FileKey, encode_name

NAMES = st.text(min_size=1, max_size=30)


@given(NAMES, NAMES)
def test_table_names_encode_to_one_safe_path_segment(a: str, b: str) -> None:
    enc = encode_name(a)
    assert "/" not in enc and enc not in (".", "..") and "\0" not in enc
    assert unquote(enc) == a
    assert (encode_name(a) == encode_name(b)) == (a == b)


@given(NAMES, st.integers(0, 2**62), st.integers(0, 2**62))
def test_relpath_is_deterministic_and_sorts_by_position(table: str, p: int, q: int) -> None:
    first, last = min(p, q), max(p, q)
    key = FileKey("gw-1", "plant", table, "2025-11-24", first, last)
    assert key.relpath == FileKey("gw-1", "plant", table, "2025-11-24", first, last).relpath
    assert key.relpath.startswith(f"bronze/plant/{encode_name(table)}/date=2025-11-24/gw-1-")
    later = FileKey("gw-1", "plant", table, "2025-11-24", last + 1, last + 2)
    assert key.relpath < later.relpath
    assert key.manifest_relpath.endswith(".manifest.json")
