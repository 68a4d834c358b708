"""The studies' plot writers produce images from the files the trainer and protocols write."""

import json

import pytest

from studies import plots
from studies.compare.sampling import plot_density_over_training
from studies.one_class.plots import plot_auroc_heatmap, plot_per_class_auroc


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_plots_write_pngs(tmp_path):
  _write_jsonl(
    tmp_path / "train.jsonl",
    [
      {
        "step": s,
        "epoch": s / 10,
        "loss": 5.0 - s / 10,
        "directional": -s,
        "radial": 1.0,
        "kl": 2.0,
        "var_mean": 0.5,
        "var_cv": 0.2,
        "z_std_min": 0.1,
        "z_std_mean": 0.3,
        "learning_rate": 0.05,
      }
      for s in range(1, 6)
    ],
  )
  plots.plot_training_curves(str(tmp_path / "train.jsonl"), str(tmp_path / "curves.png"), "t")
  _write_jsonl(tmp_path / "eval.jsonl", [{"step": s, "epoch": s, "knn30_z": 0.5 + s / 100} for s in range(3)])
  plots.plot_knn_over_training({"vje": str(tmp_path / "eval.jsonl")}, str(tmp_path / "knn.png"))
  rows = [
    {"dataset.train_classes": (c,), "auroc_joint": 0.9, "auroc_variance_sum": 0.7, "auroc_entropy": 0.8}
    for c in range(3)
  ]
  plot_per_class_auroc(rows, str(tmp_path / "bars.png"), class_names=["a", "b", "c"])
  summary = [{"vje.beta": b, "vje.nu": n, "mean_auroc_joint": 0.9} for b in (0.5, 1.0) for n in (1.0, 3.0)]
  plot_auroc_heatmap(summary, str(tmp_path / "heat.png"), "vje.beta", "vje.nu")
  sampled = {
    f"sampling_{sampler}_{metric}": 0.5
    for sampler in ("learned_density", "gaussian_fitted_afterwards", "8_component_gmm_fitted_afterwards")
    for metric in ("heldout_nll_per_dim", "recall", "dispersion")
  }
  _write_jsonl(tmp_path / "sampled.jsonl", [{"step": s, "epoch": s, **sampled} for s in range(3)])
  plot_density_over_training({"gje": str(tmp_path / "sampled.jsonl")}, str(tmp_path / "density.png"))
  with pytest.raises(ValueError, match="no sampling_learned_density"):
    plot_density_over_training({"vje": str(tmp_path / "eval.jsonl")}, str(tmp_path / "x.png"))
  for name in ("curves", "knn", "bars", "heat", "density"):
    data = (tmp_path / f"{name}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_plots_reject_missing_metrics(tmp_path):
  (tmp_path / "empty.jsonl").write_text("")
  with pytest.raises(ValueError, match="no metric rows"):
    plots.plot_training_curves(str(tmp_path / "empty.jsonl"), str(tmp_path / "x.png"))
  _write_jsonl(tmp_path / "eval.jsonl", [{"step": 1, "loss": 1.0}])
  with pytest.raises(ValueError, match=r"has none of the metrics \('knn30_z',\)"):
    plots.plot_knn_over_training({"a": str(tmp_path / "eval.jsonl")}, str(tmp_path / "x.png"))
  # A run without the metric is left out when asked; with none left, no file.
  assert not plots.plot_over_training(
    {"a": str(tmp_path / "eval.jsonl")}, str(tmp_path / "none.png"), "knn30_z", "k-NN", skip_missing=True
  )
  assert not (tmp_path / "none.png").exists()
