"""The fake's model catalogs: the generated one and catalogs loaded from files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pinference_fake import generate_catalog, load_catalog


def test_generate_catalog_is_deterministic_and_varied() -> None:
    models = generate_catalog(200)
    assert models == generate_catalog(200)
    ids = [m["id"] for m in models]
    assert len(set(ids)) == 200
    assert any(":" in i for i in ids) and any("." in i for i in ids)
    assert any(i != i.lower() for i in ids)
    assert any(set(m) == {"id", "object"} for m in models)
    assert any("image" in m.get("specs", {}).get("modalities", {}).get("input", []) for m in models)
    assert {m.get("serving") for m in models} >= {"hosted", "gateway"}


def test_load_catalog(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"id": "a/b"}]))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [{"id": "c/d", "object": "model"}]}))
    assert load_catalog(listed) == [{"id": "a/b"}]
    assert load_catalog(wrapped)[0]["id"] == "c/d"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_catalog(broken)
    with pytest.raises(ValueError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")
