"""Pictures of an autoencoder training run: the loss curve and some reconstructions (PNG, Agg)."""

from __future__ import annotations

from pathlib import Path

from lookalike.plots import matplotlib_for

matplotlib_for("the pictures of a training run")  # the backend is chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lookalike.embedders.autoencoder import TrainingReport  # noqa: E402
from lookalike.errors import RequestError  # noqa: E402


def plot_loss_curve(report: TrainingReport, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(range(1, len(report.losses) + 1), report.losses, marker="o")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("mean squared reconstruction error")
    axes.set_title(f"autoencoder training on {report.images} photos")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_reconstructions(report: TrainingReport, path: Path) -> Path:
    """Originals on the top row, what the autoencoder rebuilt from its bottleneck below."""
    if report.originals is None or report.reconstructions is None:
        raise RequestError("the training report holds no example images")
    count = len(report.originals)
    figure, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6), squeeze=False)
    for column in range(count):
        for row, images in enumerate((report.originals, report.reconstructions)):
            axes[row][column].imshow(images[column])
            axes[row][column].axis("off")
    axes[0][0].set_title("original", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
