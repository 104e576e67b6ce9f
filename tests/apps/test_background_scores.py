"""Background scores for active learning: computed once per image and model version, recomputed when either changes."""

from __future__ import annotations

from segdino_monai.apps.monailabel.scores import BackgroundScores


def test_scores_are_computed_in_the_background_once_per_image_and_model_version(tmp_path):
    paths = []
    for name, value in (("a", "0.2"), ("b", "0.9"), ("c", "0.5"), ("bad", "not a number")):
        (tmp_path / name).write_text(value)
        paths.append(str(tmp_path / name))
    model = {"version": 1}
    calls = []

    def score(path: str) -> float:  # the model's score: the file's number plus the model version
        calls.append(path)
        return float(open(path).read()) + model["version"]

    scores = BackgroundScores(score, lambda: model["version"])
    assert scores.ranking(paths) == []
    assert scores.update(paths) > 0
    assert scores.wait(30)
    names = lambda ranking: [(p.rsplit("/", 1)[-1], round(s, 6)) for p, s in ranking]  # noqa: E731
    assert names(scores.ranking(paths)) == [("b", 1.9), ("c", 1.5), ("a", 1.2)]  # "bad" failed: no score
    assert scores.computed == 3 and len(calls) == 4
    # nothing changed: nothing to compute, except the image that failed
    assert scores.update(paths[:3]) == 0
    assert len(calls) == 4
    # a changed image file: only it is scored again
    (tmp_path / "a").write_text("0.95")
    assert names(scores.ranking(paths)) == [("b", 1.9), ("c", 1.5)]
    scores.update(paths[:3])
    assert scores.wait(30)
    assert names(scores.ranking(paths)) == [("a", 1.95), ("b", 1.9), ("c", 1.5)]
    assert calls[4:] == [paths[0]]
    # a new model: every score is outdated, then recomputed
    model["version"] = 2
    assert scores.ranking(paths) == []
    assert scores.update(paths[:3]) == 3
    assert scores.wait(30)
    assert names(scores.ranking(paths)) == [("a", 2.95), ("b", 2.9), ("c", 2.5)]
    assert scores.computed == 7
