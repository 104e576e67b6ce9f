"""``utils.atomic.write_json``: the package's one JSON writer, its text exactly as ``json.dumps`` makes it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segdino_monai.utils.atomic import write_json


def test_write_json_bytes(tmp_path):
    data = {"b": 1, "a": [1.5, "x"]}
    path = write_json(data, tmp_path / "sub" / "a.json")
    assert path.read_text(encoding="utf-8") == json.dumps(data, indent=2) + "\n"
    write_json(data, path, indent=1, sort_keys=True, newline=False)
    assert path.read_text(encoding="utf-8") == json.dumps(data, indent=1, sort_keys=True)
    write_json({"n": np.float32(0.5), "v": np.arange(2), "p": tmp_path}, path)
    assert json.loads(path.read_text()) == {"n": 0.5, "v": [0, 1], "p": str(tmp_path)}
    write_json({"n": np.int64(3)}, path, default=str)
    assert json.loads(path.read_text()) == {"n": "3"}
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["a.json"]  # no temporary file left


def test_write_json_failure_leaves_the_file(tmp_path):
    path = write_json([1], tmp_path / "a.json")

    def refuse(value):
        raise TypeError("no")

    with pytest.raises(TypeError):
        write_json({"x": object()}, path, default=refuse)
    with pytest.raises(TypeError):
        write_json({"x": np.float32(1)}, path, default=None)  # None: JSON's own types only
    assert path.read_text() == "[\n  1\n]\n" and len(list(tmp_path.iterdir())) == 1
