"""The "what changed" comparison between two report.json records."""

from reportgen.sections.changes import compare_reports


def record(accuracy, matrix, dead):
    per_class = {name: row[i] / sum(row) for i, (name, row) in enumerate(zip(["a", "b"], matrix))}
    return {
        "model": {"class_names": ["a", "b"], "weights_sha256": str(accuracy)},
        "metrics": {"test_accuracy": accuracy, "test_loss": 1 - accuracy},
        "build": {"built_at": "2026-01-01T00:00:00+00:00"},
        "sections": [
            {"id": "confusion", "data": {"confusion_matrix": matrix, "per_class_accuracy": per_class}},
            {"id": "feature-vis", "data": {"layers": {"conv1": {"filters": [
                {"index": i, "dead": i in dead} for i in range(4)]}}}},
        ],
    }


def test_compare_reports_reports_every_kind_of_change():
    before = record(0.8, [[8, 2], [2, 8]], dead={1})
    after = record(0.9, [[9, 1], [1, 9]], dead={2})
    section = compare_reports(before, after)
    assert section.data["metrics"]["test_accuracy"] == {"before": 0.8, "after": 0.9}
    assert section.data["per_class_accuracy"]["a"] == {"before": 0.8, "after": 0.9}
    changed = {(c["true"], c["predicted"]): (c["before"], c["after"]) for c in section.data["confusion_changes"]}
    assert changed == {("a", "b"): (2, 1), ("b", "a"): (2, 1)}
    assert section.data["units"] == {"conv1": {"died": [2], "came_alive": [1]}}
