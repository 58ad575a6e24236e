"""The synthetic cohort: deterministic, shaped like the real one, and diseased where it should be."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.data.imageio import fit_square
from pipeline.data.synthetic import COHORT_COUNTS, MUSCLES, diagnosis_counts, generate


def echo_intensity(images: np.ndarray, table: pd.DataFrame) -> pd.Series:
    """Mean grey value in each image's muscle region of interest, as clinicians measure EI."""
    return pd.Series([images[i, r.roi_top:r.roi_bottom, r.roi_left:r.roi_right].mean()
                      for i, r in enumerate(table.itertuples())], index=table.index)


@pytest.fixture(scope="module")
def cohort():
    """40 patients, one image per muscle side, rendered at 64 px: enough for group means."""
    images, table = generate(40, 1, 64, seed=0)
    return images, table.assign(ei=echo_intensity(images, table))


def test_diagnosis_counts_keep_the_real_proportions():
    assert diagnosis_counts(80) == COHORT_COUNTS
    assert diagnosis_counts(24) == {"N": 10, "IBM": 6, "PM": 4, "DM": 4}
    assert diagnosis_counts(4) == {"N": 1, "IBM": 1, "PM": 1, "DM": 1}
    for n in range(4, 161):
        counts = diagnosis_counts(n)
        assert sum(counts.values()) == n and min(counts.values()) >= 1
        for d, c in counts.items():          # largest remainder: never more than one off the quota
            assert abs(c - n * COHORT_COUNTS[d] / 80) < 1, (n, counts)


def test_same_seed_same_bytes_other_seed_other_images():
    a, ta = generate(4, 2, 48, seed=7)
    b, tb = generate(4, 2, 48, seed=7, chunk=5, workers=1)   # chunking and threads change nothing
    c, _ = generate(4, 2, 48, seed=8)
    assert a.tobytes() == b.tobytes()
    pd.testing.assert_frame_equal(ta, tb)
    assert a.shape == c.shape and (a != c).mean() > 0.5


def test_cohort_structure():
    images, table = generate(12, 2, 32, seed=1)
    assert images.shape == (12 * 7 * 2 * 2, 32, 32) and images.dtype == np.uint8
    assert table.patient_id.nunique() == 12
    per_patient = table.groupby("patient_id")
    assert (per_patient.diagnosis.nunique() == 1).all()
    assert table.drop_duplicates("patient_id").diagnosis.value_counts().to_dict() == diagnosis_counts(12)
    for _, rows in per_patient:
        assert sorted(rows.muscle.unique()) == sorted(MUSCLES) and set(rows.side) == {"R", "L"}
        assert rows.groupby(["muscle", "side"]).size().eq(2).all()       # images_per_side repeats
    assert table.source_name.is_unique and table.sha256.is_unique


def test_disease_raises_echo_intensity(cohort):
    _, table = cohort
    by_diagnosis = table.groupby("diagnosis").ei.mean()
    assert by_diagnosis["IBM"] > max(by_diagnosis["PM"], by_diagnosis["DM"])
    assert min(by_diagnosis["PM"], by_diagnosis["DM"]) > by_diagnosis["N"] + 3
    ibm = table[table.diagnosis == "IBM"].groupby("muscle").ei.mean()
    assert set(ibm.nlargest(2).index) == {"FDP", "G"}              # Noto et al.: FDP and gastrocnemius
    assert ibm["FDP"] > ibm["FCR"] + 5                              # FDP brighter than its neighbour
    pm_dm = table[table.diagnosis.isin(["PM", "DM"])].groupby("muscle").ei.mean()
    assert pm_dm[["D", "B", "R"]].mean() > pm_dm[["T", "FCR", "FDP"]].mean()   # proximal
    myositis = table[table.diagnosis != "N"]
    assert 0.1 < (myositis.severity == 0).mean() < 0.6              # some muscles look normal


def test_normal_echo_intensity_rises_with_age(cohort):
    _, table = cohort
    normal = table[table.diagnosis == "N"].groupby("patient_id")[["age", "ei"]].mean()
    assert np.corrcoef(normal.age, normal.ei)[0, 1] > 0.3


def test_speckle_is_correlated_more_laterally_than_axially():
    images, table = generate(4, 1, 128, seed=2)
    lateral, axial = [], []
    for i, r in enumerate(table[table.severity == 0].itertuples()):
        roi = images[r.Index, r.roi_top:r.roi_bottom, r.roi_left:r.roi_right].astype(float)
        roi -= roi.mean()
        lateral.append((roi[:, 1:] * roi[:, :-1]).mean() / roi.var())
        axial.append((roi[1:] * roi[:-1]).mean() / roi.var())
    assert np.mean(lateral) > np.mean(axial) + 0.1


def test_patient_folds_are_harder_than_image_folds_at_demo_settings():
    """At the demo settings the disease is learnable, and near-duplicates make image folds easier."""
    images, table = generate(24, 2, 128, seed=0)
    x = np.stack([fit_square(im, 32) for im in images]).reshape(len(images), -1).astype(float)
    y = (table.diagnosis != "N").to_numpy()
    groups = table.patient_id.to_numpy()
    patient_cv = StratifiedGroupKFold(3, shuffle=True, random_state=0)
    image_cv = StratifiedKFold(3, shuffle=True, random_state=0)
    nearest = make_pipeline(StandardScaler(), KNeighborsClassifier(1))
    linear = make_pipeline(StandardScaler(), PCA(50, random_state=0), LogisticRegression(max_iter=2000))
    chance = max(y.mean(), 1 - y.mean())
    nearest_patient = cross_val_score(nearest, x, y, cv=patient_cv, groups=groups).mean()
    nearest_image = cross_val_score(nearest, x, y, cv=image_cv).mean()
    linear_patient = cross_val_score(linear, x, y, cv=patient_cv, groups=groups).mean()
    assert nearest_image > nearest_patient + 0.1     # a near-duplicate in training gives the answer away
    assert linear_patient > chance + 0.08            # yet the disease itself generalises across patients
