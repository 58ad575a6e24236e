"""The built-in synthetic cohort: B-mode-like transverse muscle ultrasound with the structure of
the public myositis cohort, generated deterministically from `seed`.

Cohort (Burlina et al., PLoS One 2017, doi 10.1371/journal.pone.0184059): patients with
diagnosis N, IBM, PM, DM in the proportion 33/19/14/14 of 80, scaled to `patients` by
largest-remainder rounding with at least one patient per diagnosis; seven muscles (deltoid D,
biceps B, rectus femoris R, medial gastrocnemius G, tibialis anterior T, flexor carpi radialis
FCR, flexor digitorum profundus FDP) on both sides (R, L); `images_per_side` images of each
muscle side taken seconds apart: the same anatomy under a probe moved by up to 2.5 mm, with
partly decorrelated speckle, so the repeats are near-duplicates as in the real data.

Image model (one transverse view, 40 x 40 mm, depth downwards). A map of backscatter power
(reflectivity) is built from analytic, laterally undulating tissue boundaries, then imaged:

- skin: a bright entry echo and moderately echoic dermis;
- subcutaneous fat: hypoechoic, thickness a patient trait (sex, build) times a site factor,
  crossed by two to four thin bright connective-tissue septa;
- fascia (epimysium): a bright smooth line;
- muscle: dark fibres with a perimysium texture, sparse bright scatterers smeared into short
  lateral streaks by the beam ("starry night" of a transverse view); some muscles have an
  aponeurosis with a deeper compartment under it (brachialis, vastus intermedius, soleus, FDS);
- bone (absent under gastrocnemius): a bright convex cortex line, nearly opaque, so the region
  below it is an acoustic shadow;
- speckle: complex circular Gaussian scatterers weighted by sqrt(reflectivity) and convolved
  with a Gaussian point-spread function wider laterally (sigma 0.45 mm) than axially
  (0.15 mm). Its envelope is Rayleigh distributed with power equal to the local reflectivity
  (fully developed speckle; Wagner et al., "Statistics of speckle in ultrasound B-scans", IEEE
  Trans. Sonics Ultrason. 1983) and spatially correlated over the resolution cell;
- attenuation: what time-gain compensation leaves of it, about 1-2 dB/cm round trip in normal
  tissue (a patient/device-specific residual slope is added), much more in fibrotic muscle and
  in bone; electronic noise sets the floor seen in the shadow;
- display: 20 log10(envelope) plus the session's gain, mapped linearly from a dynamic range of
  about 52 dB onto 0..255 (log compression), then quantised to 8 bits like a device's output.

Patient-level random effects, shared by all 14 muscle sides of a patient: device gain and
dynamic range, residual attenuation slope, fat thickness, muscle bulk, texture density, and age.
Echo intensity (EI, the mean grey value in the muscle) rises with age by 0.1 dB (about 0.5 grey
levels) per year and differs a little between muscles (Pillen et al., Muscle Nerve 2009 and
Ultrasound Med Biol 2006: EI increases with age and differs between muscles; abnormal is a
z-score above about 2); IBM patients are older (mean 67 years) than the others, as in clinical
series. These effects make a patient's identity learnable from any one image, which is why
image-level folds overstate accuracy compared with patient-grouped folds, as in the real data.

Disease. Each myositis patient has a severity (IBM higher on average than PM and DM), spread
over muscles by a diagnosis-specific pattern; each muscle is involved or not at random (so some
muscles of a myositis patient look normal), IBM asymmetrically, PM and DM symmetrically. In an
involved muscle, severity s raises the muscle's reflectivity by 15 s dB (fibrosis and fatty
infiltration), removes up to 80 % of the fascicle texture ("ground glass"), raises attenuation by
5 s dB/cm so the deep muscle and the bone echo fade (Heckmatt et al., J Pediatr 1982: grade II
raised muscle echo with a clear bone echo, III weaker bone echo, IV bone echo lost) and thins the
muscle by up to 35 % (atrophy). IBM is the brightest and most marked in FDP (brighter than the
neighbouring FCR) and in medial gastrocnemius (more than the soleus beneath it) (Noto et al.,
Muscle Nerve 2014: IBM muscles have a higher mean grey level than PM and DM, with FDP and
medial gastrocnemius selectively involved). DM and PM are milder and proximal (deltoid, biceps,
rectus femoris), may be patchy (oedema), and DM may brighten the subcutaneous fat and fascia.

All randomness comes from numpy generators seeded by (seed, patient, muscle, side), so every
image is reproducible bit for bit and independent of how the work is chunked.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from pipeline.core.scenarios import DIAGNOSES, MUSCLES

COHORT_COUNTS = {"N": 33, "IBM": 19, "PM": 14, "DM": 14}   # Burlina et al. 2017, 80 patients
SIDES = ("R", "L")

FIELD_MM = 40.0          # the rendered square spans 40 x 40 mm
MAX_SHIFT_MM = 2.5       # probe moved laterally by up to this between repeated images
PSF_SIGMA_MM = (0.15, 0.45)   # axial, lateral: the resolution cell of a ~10 MHz linear probe
SPECKLE_CORRELATION = 0.85    # speckle shared by repeated images of one muscle side
FASCICLE_DENSITY = 0.6   # bright perimysium scatterers per mm^2 of muscle

# Per muscle: muscle thickness (mm), fat site factor, aponeurosis depth as a fraction of the
# muscle (0: none), share of the disease reaching the deeper compartment, bone (centre mm from
# the image centre, radius of curvature mm, half-width mm; radius 0: no bone), baseline EI (dB).
ANATOMY = {
    "D":   dict(muscle_mm=18, fat=1.0, apo=0.0,  deep=1.0, bone=(0, 18, 13), ei_db=0.0),
    "B":   dict(muscle_mm=20, fat=0.8, apo=0.55, deep=0.6, bone=(2, 14, 10), ei_db=-0.5),
    "R":   dict(muscle_mm=22, fat=1.4, apo=0.5,  deep=0.8, bone=(0, 20, 14), ei_db=0.5),
    "G":   dict(muscle_mm=17, fat=1.2, apo=0.55, deep=0.35, bone=(0, 0, 0),  ei_db=1.0),
    "T":   dict(muscle_mm=22, fat=0.6, apo=0.0,  deep=1.0, bone=(-11, 12, 8), ei_db=0.0),
    "FCR": dict(muscle_mm=11, fat=0.7, apo=0.6,  deep=0.5, bone=(3, 10, 7),  ei_db=0.5),
    "FDP": dict(muscle_mm=15, fat=0.6, apo=0.0,  deep=1.0, bone=(-2, 9, 8),  ei_db=0.5),
}

# How strongly each diagnosis involves each muscle (0..1), after the clinical literature.
INVOLVEMENT = {
    "N":   dict(D=0.0, B=0.0, R=0.0, G=0.0, T=0.0, FCR=0.0, FDP=0.0),
    "IBM": dict(D=0.30, B=0.45, R=0.70, G=0.95, T=0.55, FCR=0.35, FDP=1.0),
    "PM":  dict(D=0.90, B=0.85, R=0.85, G=0.40, T=0.30, FCR=0.30, FDP=0.30),
    "DM":  dict(D=0.90, B=0.85, R=0.80, G=0.35, T=0.30, FCR=0.30, FDP=0.30),
}
SEVERITY_BETA = {"IBM": (5.0, 2.5), "PM": (3.0, 3.5), "DM": (3.0, 3.5)}   # patient severity ~ Beta
AGE = {"N": (50, 16), "IBM": (67, 8), "PM": (52, 14), "DM": (48, 15)}      # mean, sd (years)
EI_PER_SEVERITY_DB = 15.0
EI_PER_YEAR_DB = 0.1
DISPLAY_OFFSET_DB = 18.0   # maps normal muscle to a mean grey of about 60 at 52 dB dynamic range


def diagnosis_counts(patients: int) -> dict[str, int]:
    """Patients per diagnosis: 33/19/14/14 of 80 scaled by largest remainder, at least one each."""
    total = sum(COHORT_COUNTS.values())
    quotas = {d: patients * n / total for d, n in COHORT_COUNTS.items()}
    counts = {d: math.floor(q) for d, q in quotas.items()}
    by_remainder = sorted(DIAGNOSES, key=lambda d: (-(quotas[d] - counts[d]), DIAGNOSES.index(d)))
    for d in by_remainder[: patients - sum(counts.values())]:
        counts[d] += 1
    for d in DIAGNOSES:  # tiny cohorts: take from the largest group so every diagnosis appears
        if counts[d] == 0:
            donor = max(DIAGNOSES, key=lambda k: counts[k])
            counts[donor] -= 1
            counts[d] += 1
    return counts


def patient_table(patients: int, seed: int) -> pd.DataFrame:
    """One row per patient: patient_id, diagnosis and the patient-level random effects."""
    counts = diagnosis_counts(patients)
    rng = np.random.default_rng([seed, 1])
    diagnoses = np.array([d for d in DIAGNOSES for _ in range(counts[d])])
    rng.shuffle(diagnoses)  # patient numbers say nothing about the diagnosis
    width = max(2, len(str(patients)))
    rows = []
    for i, diagnosis in enumerate(diagnoses):
        age_mean, age_sd = AGE[diagnosis]
        sex = "F" if rng.random() < 0.5 else "M"
        a, b = SEVERITY_BETA.get(diagnosis, (1.0, 1.0))
        rows.append(dict(
            patient_id=f"P{i + 1:0{width}d}",
            diagnosis=str(diagnosis),
            age=float(np.clip(rng.normal(age_mean, age_sd), 18, 90)),
            sex=sex,
            gain_db=rng.normal(0.0, 1.5),                 # device/session gain
            range_db=rng.normal(52.0, 3.0),               # display dynamic range
            slope_db_cm=rng.normal(0.0, 0.8),             # residual after time-gain compensation
            fat_mm=rng.lognormal(math.log(7.0 if sex == "F" else 5.0), 0.35),
            bulk=float(np.clip(rng.normal(1.0, 0.12), 0.7, 1.3)),
            texture=float(np.clip(rng.normal(1.0, 0.15), 0.6, 1.4)),
            severity=0.0 if diagnosis == "N" else rng.beta(a, b),
            skin_involved=diagnosis == "DM" and rng.random() < 0.4,
        ))
    return pd.DataFrame(rows)


def _muscle_severity(patient, muscle: str, rng: np.random.Generator) -> tuple[float, float]:
    """Disease severity of one muscle (of a patient_table row) on the right and left side (0: looks normal)."""
    weight = INVOLVEMENT[patient.diagnosis][muscle]
    if patient.severity == 0 or rng.random() > 0.45 + 0.55 * weight:
        return 0.0, 0.0
    base = patient.severity * weight * rng.lognormal(0.0, 0.3)
    spread = 0.35 if patient.diagnosis == "IBM" else 0.1   # IBM is often asymmetric
    return tuple(float(base * rng.lognormal(0.0, spread)) for _ in SIDES)


def generate(patients: int, images_per_side: int, render_size: int, seed: int,
             chunk: int = 16, workers: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Render the cohort: uint8 images (N, render_size, render_size) and one table row per image.

    The table has patient_id, diagnosis, muscle, side, repeat, source_name, path, sha256 (of
    the rendered image), age, severity (of that muscle side) and roi_top/bottom/left/right: an
    echo-intensity region of interest inside the superficial muscle, in rendered pixels.
    Chunks of `chunk` muscle sides render in `workers` threads (numpy and scipy release the
    GIL); the result does not depend on either.
    """
    table = patient_table(patients, seed)
    scenes = []
    for p, patient in enumerate(table.itertuples(index=False)):
        severity_rng = np.random.default_rng([seed, 2, p])
        for m, muscle in enumerate(MUSCLES):
            severities = _muscle_severity(patient, muscle, severity_rng)
            for s in range(len(SIDES)):
                scenes.append((p, m, s, severities[s]))
    batches = [scenes[i:i + chunk] for i in range(0, len(scenes), chunk)]
    workers = workers or min(2, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda b: _render_scenes(b, table, images_per_side, render_size, seed), batches))
    images = np.concatenate([r[0] for r in results])
    rois = np.concatenate([r[1] for r in results])
    rows = []
    for (p, m, s, severity) in scenes:
        patient = table.iloc[p]
        for r in range(images_per_side):
            k = len(rows)
            name = f"{patient.patient_id}_{SIDES[s]}{MUSCLES[m]}_{r + 1}.png"
            rows.append(dict(
                patient_id=patient.patient_id, diagnosis=patient.diagnosis, muscle=MUSCLES[m],
                side=SIDES[s], repeat=r + 1, source_name=name, path=f"synthetic/{name}",
                sha256=hashlib.sha256(images[k].tobytes()).hexdigest(), age=round(float(patient.age), 1),
                severity=round(severity, 4), roi_top=int(rois[k, 0]), roi_bottom=int(rois[k, 1]),
                roi_left=int(rois[k, 2]), roi_right=int(rois[k, 3])))
    return images, pd.DataFrame(rows)


def _scene(patient, muscle: str, severity: float, rng: np.random.Generator) -> dict[str, float]:
    """Anatomy and imaging parameters of one muscle side, shared by its repeated images."""
    anat = ANATOMY[muscle]
    sev = min(severity, 1.5)
    bone_x, bone_r, bone_w = anat["bone"]
    return dict(
        skin=rng.uniform(1.0, 1.6),
        fat=patient.fat_mm * anat["fat"] * rng.lognormal(0.0, 0.08),
        muscle=anat["muscle_mm"] * patient.bulk * (1 - 0.35 * min(sev, 1.0)) * rng.lognormal(0.0, 0.06),
        tilt=rng.normal(0.0, 0.04), wave_amp=rng.uniform(0.3, 1.2), wave_len=rng.uniform(25, 60),
        wave_phase=rng.uniform(0, 2 * math.pi),
        apo=anat["apo"] * rng.uniform(0.9, 1.1), apo_tilt=rng.normal(0.0, 0.08), deep=anat["deep"],
        bone_x=bone_x + rng.normal(0, 1.5), bone_r=bone_r * rng.uniform(0.85, 1.15),
        bone_w=bone_w * rng.uniform(0.9, 1.1),
        bone_gain=max(0.05, 1.0 - 0.7 * min(sev, 1.0)),   # Heckmatt: bone echo fades
        ei_db=anat["ei_db"] + EI_PER_YEAR_DB * (patient.age - 50) + EI_PER_SEVERITY_DB * sev,
        tex=0.92 * (1 - 0.8 * min(sev, 1.0)),               # ground glass
        atten=5.0 * sev,
        oedema=(0.5 if patient.diagnosis in ("PM", "DM") else 0.2) * sev,
        fat_r=0.15 * (1.0 + (1.5 * patient.severity if patient.skin_involved else 0.0)),
        fascia_mm=0.5 + (0.4 if patient.skin_involved else 0.0),
        slope=patient.slope_db_cm, gain=patient.gain_db, range=patient.range_db,
        streak_mm=rng.uniform(0.4, 0.9), texture_density=FASCICLE_DENSITY * patient.texture)


def _render_scenes(batch: list[tuple[int, int, int, float]], table: pd.DataFrame, repeats: int,
                   size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render `repeats` images of each (patient, muscle, side, severity) scene, vectorised over images."""
    f32 = np.float32
    mm = FIELD_MM / size                                 # millimetres per pixel
    margin = int(math.ceil(MAX_SHIFT_MM / mm))
    wide = size + 2 * margin
    n_img = len(batch) * repeats
    params: dict[str, np.ndarray] = {}
    septa = np.zeros((4, 5, n_img), dtype=f32)         # 4 septa x (depth fraction, slope, x0, x1, power)
    texture = np.empty((n_img, size, size), dtype=f32)  # perimysium pattern, mean 1
    patches = np.empty((n_img, size, size), dtype=f32)  # smooth N(0, 1) field: oedema
    noise = np.empty((n_img, 3, size, size), dtype=f32)  # speckle re, im; electronic noise
    rho = SPECKLE_CORRELATION
    for j, (p, m, s, severity) in enumerate(batch):
        patient = table.iloc[p]
        rng = np.random.default_rng([seed, 3, p, m, s])
        scene = _scene(patient, MUSCLES[m], severity, rng)
        scene_septa = np.zeros((4, 5), dtype=f32)
        for k in range(rng.integers(2, 5)):
            x0 = rng.uniform(-25, 10)
            scene_septa[k] = (rng.uniform(0.15, 0.85), rng.normal(0, 0.08), x0, x0 + rng.uniform(10, 35),
                              rng.uniform(3.0, 7.0))
        # Perimysium: sparse bright scatterers, smeared into short lateral streaks.
        count = rng.poisson(scene["texture_density"] * size * wide * mm * mm)
        flat = rng.integers(0, size * wide, count)
        points = np.bincount(flat, weights=rng.exponential(1.0, count), minlength=size * wide)
        points = points.reshape(size, wide).astype(f32)
        streaks = ndimage.gaussian_filter(points, (0.10 / mm, scene["streak_mm"] / mm), truncate=3.0)
        streaks /= max(float(streaks.mean()), 1e-6)
        coarse = rng.standard_normal((9, int(9 * wide / size) + 1)).astype(f32)
        smooth = np.asarray(Image.fromarray(coarse).resize((wide, size), Image.Resampling.BICUBIC))
        # One white-noise field per scene: the crop at row 0 moves with the tissue (shared by
        # the repeats); crops starting at rows 1.. are independent samples of white noise
        # (fresh speckle for each repeat) without drawing more random numbers.
        field = rng.standard_normal((3, size + repeats + 1, wide), dtype=f32)
        for r in range(repeats):
            i = j * repeats + r
            for key, value in scene.items():
                params.setdefault(key, np.zeros(n_img))[i] = value
            offset = int(rng.integers(0, 2 * margin + 1))
            other = int(rng.integers(0, 2 * margin + 1))
            params.setdefault("offset", np.zeros(n_img))[i] = (offset - margin) * mm
            params["fat"][i] = scene["fat"] * rng.uniform(0.95, 1.02)   # probe pressure
            septa[:, :, i] = scene_septa
            texture[i] = streaks[:, offset:offset + size]
            patches[i] = smooth[:, offset:offset + size]
            fixed = field[:2, :size, offset:offset + size]
            fresh = field[:, 1 + r:1 + r + size, other:other + size]
            noise[i, :2] = rho * fixed + math.sqrt(1 - rho * rho) * fresh[:2]
            noise[i, 2] = fresh[2]

    v = {k: a.astype(f32)[:, None, None] for k, a in params.items()}
    z = ((np.arange(size, dtype=f32) + 0.5) * mm)[None, :, None]                          # depth, mm
    x = ((np.arange(size, dtype=f32) + 0.5 - size / 2) * mm)[None, None, :] + v["offset"]  # lateral, mm
    far = f32(10 * FIELD_MM)   # depth of a boundary that is not there

    # Boundaries per image and column (n_img, 1, size): they undulate gently and tilt.
    wave = v["wave_amp"] * np.sin(2 * np.pi * x / v["wave_len"] + v["wave_phase"])
    z_fascia = v["skin"] + v["fat"] + v["tilt"] * x + 0.4 * wave
    dx = x - v["bone_x"]
    z_bone = z_fascia + v["muscle"] - 0.3 * wave + dx * dx / (2 * np.maximum(v["bone_r"], 1.0))
    z_bone = np.where((v["bone_r"] > 0) & (np.abs(dx) < v["bone_w"]), z_bone, far)
    z_apo = np.where(v["apo"] > 0, z_fascia + v["apo"] * v["muscle"] + v["apo_tilt"] * x + 0.5 * wave, far)

    # Backscatter power, built by blending (arithmetic on 0/1 masks is much faster than
    # masked assignment). Normal muscle fibres have power about 0.5, fat 0.15.
    above_fascia = (z < z_fascia).astype(f32)
    in_skin = (z < v["skin"]).astype(f32)
    deep = (z > z_apo).astype(f32)
    muscle_db = v["ei_db"] * (1 + (v["deep"] - 1) * deep)   # the deep compartment is spared in part
    tex = v["tex"] * (1 - 0.2 * deep)
    muscle = np.exp(f32(math.log(10) / 10) * muscle_db) * ((1 - tex) + tex * texture)
    muscle *= np.exp(v["oedema"] * patches) * f32(0.5)
    refl = muscle * (1 - above_fascia) + v["fat_r"] * (above_fascia - in_skin) + f32(2.5) * in_skin

    def paint(mask: np.ndarray, value) -> None:
        nonlocal refl
        refl += (value - refl) * mask

    paint((z < 0.25).astype(f32), f32(8.0))             # probe-skin entry echo
    rows = int(min(size, math.ceil(float(z_fascia.max()) / mm) + 1))   # septa lie in the fat only
    zs, xs = z[:, :rows], x
    fat_rows = (zs >= v["skin"]) & (zs < z_fascia)
    for k in range(4):
        depth, slope, x0, x1, amp = (a[:, None, None] for a in septa[k])
        z_sep = v["skin"] + depth * v["fat"] + slope * xs + 0.5 * wave
        line = (np.abs(zs - z_sep) < 0.12) & (xs > x0) & (xs < x1) & fat_rows
        refl[:, :rows] += (amp - refl[:, :rows]) * line
    paint((np.abs(z - z_fascia) < v["fascia_mm"] / 2).astype(f32), f32(10.0))
    paint((np.abs(z - z_apo) < 0.3).astype(f32), f32(6.0))
    below_bone = z >= z_bone
    paint((below_bone & (z < z_bone + 0.8)).astype(f32), 100.0 * v["bone_gain"])
    refl *= 1 - (z >= z_bone + 0.8).astype(f32)          # acoustic shadow under the cortex

    # Residual attenuation after time-gain compensation, dB round trip, in closed form over the
    # layers above each pixel (fat 1.5 dB/cm, muscle 1 dB/cm plus disease, cortex 300 dB/cm).
    loss = (1.5 + v["slope"]) * z + (v["atten"] - 0.5) * np.maximum(np.minimum(np.minimum(z, z_apo), z_bone) - z_fascia, 0)
    loss += (v["atten"] * v["deep"] - 0.5) * np.maximum(np.minimum(z, z_bone) - z_apo, 0)
    loss += 300.0 * np.maximum(z - z_bone, 0)
    loss *= f32(-math.log(10) / 100)                    # dB per cm * mm -> natural-log power factor

    # Speckle: scatterers weighted by sqrt(power), blurred by the point-spread function.
    sigma = (0, PSF_SIGMA_MM[0] / mm, PSF_SIGMA_MM[1] / mm)
    amp = np.sqrt(refl)
    re = ndimage.gaussian_filter(amp * noise[:, 0], sigma, truncate=3.0)
    im = ndimage.gaussian_filter(amp * noise[:, 1], sigma, truncate=3.0)
    power = (re * re + im * im) * f32(1 / _psf_energy(sigma[1:])) * np.exp(loss)
    power += f32(10 ** -2.0) * noise[:, 2] ** 2          # electronic noise floor
    gray = (255 / v["range"]) * (f32(10) * np.log10(power + f32(1e-12)) + v["gain"] + f32(DISPLAY_OFFSET_DB))
    images = np.clip(np.rint(gray), 0, 255).astype(np.uint8)

    # Echo-intensity ROI: inside the superficial muscle, 12 mm wide around the image centre.
    half = int(6 / mm)
    centre = slice(size // 2 - half, size // 2 + half)
    top = np.ceil((z_fascia[:, 0, centre].max(axis=1) + 1.0) / mm)
    floor_mm = np.minimum(z_apo[:, 0, centre].min(axis=1), z_bone[:, 0, centre].min(axis=1))
    bottom = np.floor((np.minimum(floor_mm, top * mm + 12.0) - 1.0) / mm)
    top = np.clip(top, 0, size - 3)
    bottom = np.clip(np.maximum(bottom, top + 2), 0, size)
    rois = np.stack([top, bottom, np.full(n_img, centre.start), np.full(n_img, centre.stop)], axis=1)
    return images, rois.astype(int)


@functools.lru_cache(maxsize=8)
def _psf_energy(sigma: tuple[float, float]) -> float:
    """Sum of squares of the discrete PSF kernel: the power gain of filtering white noise."""
    impulse = np.zeros((41, 41), dtype=np.float64)
    impulse[20, 20] = 1.0
    return float((ndimage.gaussian_filter(impulse, sigma, truncate=3.0) ** 2).sum())
