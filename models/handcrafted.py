"""A classical baseline: hand-crafted grey-level and texture statistics and a logistic regression.

Burlina et al. (PLoS One 2017) set a random forest on hand-crafted image features beside their
CNN; clinicians read muscle ultrasound the same way, by echo intensity (the mean grey level) and
texture (Pillen et al.; Heckmatt scale). This baseline makes that reference point explicit. The
features, per image, computed in torch so the model runs, is profiled and is timed like any other:

- grey levels: mean, sd, skewness, kurtosis and the 10/25/50/75/90th percentiles;
- depth profile: the mean of four horizontal bands, top (skin, fat) to bottom (muscle, bone);
- texture: mean and sd of the Sobel gradient magnitude, the ratio of vertical to horizontal
  gradient energy (fascicle streaks are horizontal in a transverse view), the mean local (3x3)
  standard deviation, and the correlation of neighbouring pixels at lags 1 and 2, across and down.

The classifier is scikit-learn's LogisticRegression on the standardised features, its inverse
regularisation C chosen on the fold's validation part (as every network's epoch is, by the same
figure, train.select_by); the fitted
coefficients become an nn.Linear, so the fitted model is an ordinary torch module with a state_dict.
A logistic regression rather than Burlina's random forest for that reason: a forest is not a
tensor computation, and could not be counted or timed in the same terms as the networks.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.registry import register_model

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)
BANDS = 4


class GreyLevelTexture(nn.Module):
    """(N, C, H, W) images -> (N, n_features) grey-level and texture statistics (see the module docstring)."""

    n_features = 4 + len(QUANTILES) + BANDS + 3 + 1 + 4

    def __init__(self) -> None:
        super().__init__()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernels", torch.stack([sobel, sobel.t()])[:, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().mean(dim=1, keepdim=True)                  # channels to one grey level
        n, _, h, w = x.shape
        flat = x.flatten(1)
        mean = flat.mean(1, keepdim=True)
        centred = flat - mean
        sd = centred.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-6)
        z = centred / sd
        moments = [mean, sd, z.pow(3).mean(1, keepdim=True), z.pow(4).mean(1, keepdim=True)]
        quantiles = torch.quantile(flat, torch.tensor(QUANTILES, device=x.device), dim=1).t()
        bands = torch.stack([part.mean(dim=(1, 2, 3)) for part in torch.tensor_split(x, BANDS, dim=2)], dim=1)
        g = F.conv2d(x, self.kernels, padding=1)
        gx, gy = g[:, :1], g[:, 1:]
        magnitude = (gx.pow(2) + gy.pow(2)).sqrt().flatten(1)
        gradient = [magnitude.mean(1, keepdim=True), magnitude.std(1, keepdim=True),
                    (gy.pow(2).mean(dim=(1, 2, 3)) / gx.pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-6))[:, None]]
        local_mean = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        local_sq = F.avg_pool2d(x * x, 3, 1, 1, count_include_pad=False)
        local_sd = (local_sq - local_mean.pow(2)).clamp_min(0).sqrt().mean(dim=(1, 2, 3))[:, None]
        zi = z.view(n, 1, h, w)
        lags = [(zi[..., :, k:] * zi[..., :, :-k]).mean(dim=(1, 2, 3)) for k in (1, 2)]
        lags += [(zi[..., k:, :] * zi[..., :-k, :]).mean(dim=(1, 2, 3)) for k in (1, 2)]
        return torch.cat([*moments, quantiles, bands, *gradient, local_sd, torch.stack(lags, dim=1)], dim=1)

    def macs(self, input_shape) -> int:
        """Multiply-accumulates of one forward, for thop: a few per pixel for each statistic, the 3x3
        Sobel pair (18 per pixel) and the 3x3 local moments (18 per pixel); sorting for the quantiles
        counts as comparisons, not MACs, as max-pooling does elsewhere in this project."""
        n, c, h, w = input_shape
        per_pixel = c + 4 + 18 + 4 + 18 + 4 + 4
        return int(n * h * w * per_pixel)


class Handcrafted(nn.Module):
    """Features, standardised with the training part's statistics, then a linear (logistic) classifier."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1):
        super().__init__()
        self.num_classes = num_classes
        self.features = GreyLevelTexture()
        k = GreyLevelTexture.n_features
        self.register_buffer("feature_mean", torch.zeros(k))
        self.register_buffer("feature_std", torch.ones(k))
        self.fc = nn.Linear(k, num_classes)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.features(x) - self.feature_mean) / self.feature_std)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: np.ndarray, x_val: torch.Tensor, y_val: np.ndarray, seed: int = 0,
            key: Callable[[dict], Any] | None = None) -> list[dict[str, float]]:
        """Fit on (x, y), choosing C on the validation part by `key` (larger is better; default: balanced
        accuracy, then lower log loss); returns one row per C tried.

        Classes absent from the training part keep a zero weight row and a very low bias.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score, log_loss

        key = key or (lambda r: (r["val_balanced_accuracy"], -r["val_loss"]))

        f, f_val = self.features(x).double(), self.features(x_val).double()
        mean, std = f.mean(0), f.std(0).clamp_min(1e-6)
        a, a_val = ((f - mean) / std).numpy(), ((f_val - mean) / std).numpy()
        present = np.unique(y)
        rows, best = [], None
        for i, c in enumerate(C_GRID, start=1):
            clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(a, y)
            prob = self._full_proba(clf.predict_proba(a_val), present)
            train_prob = self._full_proba(clf.predict_proba(a), present)
            row = {"epoch": i, "C": c, "val_accuracy": float((prob.argmax(1) == y_val).mean()),
                   "val_balanced_accuracy": float(balanced_accuracy_score(y_val, prob.argmax(1))),
                   "val_loss": float(log_loss(y_val, prob, labels=range(self.num_classes))),
                   "train_loss": float(log_loss(y, train_prob, labels=range(self.num_classes)))}
            rows.append(row)
            if best is None or key(row) > key(best[0]):
                best = (row, clf)
        row, clf = best
        self.feature_mean.copy_(mean.float())
        self.feature_std.copy_(std.float())
        weight = torch.zeros(self.num_classes, f.shape[1], dtype=torch.float64)
        bias = torch.full((self.num_classes,), -30.0, dtype=torch.float64)
        coef, intercept = torch.from_numpy(clf.coef_), torch.from_numpy(clf.intercept_)
        if len(present) == 2:   # one logit for the second class: split it into two softmax logits
            coef, intercept = torch.cat([-coef / 2, coef / 2]), torch.cat([-intercept / 2, intercept / 2])
        weight[present], bias[present] = coef, intercept
        self.fc.weight.copy_(weight.float())
        self.fc.bias.copy_(bias.float())
        self.chosen_c = row["C"]
        return rows

    def _full_proba(self, prob: np.ndarray, present: np.ndarray) -> np.ndarray:
        out = np.zeros((len(prob), self.num_classes))
        out[:, present] = prob
        return out


@register_model("Hand-crafted features + logistic regression", weights=False)
def handcrafted(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> Handcrafted:
    """Grey-level and texture statistics with a logistic regression, fitted by scikit-learn (no epochs)."""
    if pretrained:
        raise ValueError("handcrafted has no pretrained weights; set its `pretrained: false`")
    return Handcrafted(num_classes=num_classes, in_chans=in_chans)
