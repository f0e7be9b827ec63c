"""A synthetic CheXpert cohort: patients, studies, views, latent disease and report labels.

Each study has a latent severity per disease, drawn from a correlated Gaussian that is partly
shared by all studies of the same patient (so a patient-level split matters). The image shows a
sign whose amplitude grows smoothly with the severity; the report label is the severity plus
reading noise, thresholded. So labels are noisy functions of what the image shows and no model
can reach an AUC of 1. Where the noisy reading lands near the threshold the report says
"uncertain" (-1.0); most negatives go unmentioned (blank), as in CheXpert's training set. The
validation set (CheXpert's ``valid.csv``) is read by a panel: less noise, only 1.0 and 0.0.
"""

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from deepauc.data.chexpert import HEADER, LABEL_COLUMNS
from deepauc.data.synth.phantom import DISEASE_SIGNS


@dataclass(frozen=True)
class LabelRates:
    """Share of training images labelled positive, uncertain and explicitly negative."""

    positive: float
    uncertain: float
    negative: float


#: Rounded from CheXpert's training set (Irvin et al. 2019, table 1).
CHEXPERT_RATES = {
    "Cardiomegaly": LabelRates(positive=0.12, uncertain=0.036, negative=0.05),
    "Edema": LabelRates(positive=0.23, uncertain=0.058, negative=0.09),
    "Consolidation": LabelRates(positive=0.066, uncertain=0.124, negative=0.126),
    "Atelectasis": LabelRates(positive=0.15, uncertain=0.15, negative=0.006),
    "Pleural Effusion": LabelRates(positive=0.385, uncertain=0.052, negative=0.156),
}

#: Correlation of the latent severities, in DISEASE_SIGNS order: cardiomegaly, edema and
#: effusion travel together (heart failure); atelectasis goes with effusion and consolidation.
SEVERITY_CORRELATION = np.array(
    [
        [1.00, 0.45, 0.10, 0.15, 0.40],
        [0.45, 1.00, 0.20, 0.15, 0.45],
        [0.10, 0.20, 1.00, 0.30, 0.25],
        [0.15, 0.15, 0.30, 1.00, 0.35],
        [0.40, 0.45, 0.25, 0.35, 1.00],
    ]
)

PATIENT_SHARE = 0.6  # share of a study's severity variance shared by all of a patient's studies
READING_NOISE = 0.75  # standard deviation of the training reports' reading noise
PANEL_NOISE = 0.55  # the validation panel reads more carefully
SIGN_STEEPNESS = 3.0  # how fast a sign's amplitude rises around the labelling threshold


@dataclass(frozen=True)
class CohortSpec:
    """Size and shape of the synthetic cohort."""

    n_train_patients: int = 400
    n_valid_patients: int = 100
    mean_studies_per_patient: float = 2.0
    lateral_fraction: float = 0.15
    seed: int = 0


def sample_cohort(spec: CohortSpec, dataset_dir: str) -> pd.DataFrame:
    """One row per image: CheXpert's 19 columns plus ``split``, severities and amplitudes.

    Extra columns: ``split`` (train or valid), ``patient_index``, ``study_index``, ``view_index``,
    ``ap``, ``devices``, ``female``, and per disease ``severity:<disease>`` (latent) and
    ``amplitude:<disease>`` (what the image shows, in [0, 1]).
    """
    rng = np.random.default_rng([spec.seed, 1])
    studies = pd.concat(
        [
            _studies(rng, "train", 1, spec.n_train_patients, spec.mean_studies_per_patient),
            _studies(rng, "valid", spec.n_train_patients + 1, spec.n_valid_patients, 1.0),
        ],
        ignore_index=True,
    )
    _draw_severities(rng, studies)
    _draw_reports(rng, studies)
    return _expand_views(rng, studies, spec.lateral_fraction, dataset_dir)


def _studies(rng, split, first_patient, n_patients, mean_studies) -> pd.DataFrame:
    counts = np.minimum(1 + rng.poisson(mean_studies - 1.0, size=n_patients), 6)
    patient = np.repeat(np.arange(first_patient, first_patient + n_patients), counts)
    study = np.concatenate([np.arange(1, n + 1) for n in counts])
    female = np.repeat(rng.random(n_patients) < 0.42, counts)
    age = np.repeat(np.clip(rng.normal(61, 17, n_patients), 18, 90).astype(int), counts)
    return pd.DataFrame(
        {
            "split": split,
            "patient_index": patient,
            "study_index": study,
            "female": female,
            "Age": age,
        }
    )


def _draw_severities(rng, studies: pd.DataFrame) -> None:
    chol = np.linalg.cholesky(SEVERITY_CORRELATION)
    n_patients = studies["patient_index"].max() + 1
    per_patient = rng.standard_normal((n_patients, len(DISEASE_SIGNS))) @ chol.T
    per_study = rng.standard_normal((len(studies), len(DISEASE_SIGNS))) @ chol.T
    severity = (
        np.sqrt(PATIENT_SHARE) * per_patient[studies["patient_index"].to_numpy()]
        + np.sqrt(1 - PATIENT_SHARE) * per_study
    )
    normal = NormalDist()
    for j, disease in enumerate(DISEASE_SIGNS):
        threshold = normal.inv_cdf(1 - CHEXPERT_RATES[disease].positive)
        studies[f"severity:{disease}"] = severity[:, j]
        studies[f"amplitude:{disease}"] = 1 / (
            1 + np.exp(-SIGN_STEEPNESS * (severity[:, j] - threshold))
        )
    sickness = severity.mean(axis=1)
    # Sicker patients get portable AP films and lines and tubes: confounders, not findings.
    studies["ap"] = rng.random(len(studies)) < 1 / (1 + np.exp(-(1.2 * sickness + 0.8)))
    studies["devices"] = rng.random(len(studies)) < 1 / (1 + np.exp(-(1.5 * sickness - 0.4)))


def _draw_reports(rng, studies: pd.DataFrame) -> None:
    """Turn severities into report labels: train as CheXpert's labeler, valid as its panel."""
    normal = NormalDist()
    train = (studies["split"] == "train").to_numpy()
    for disease in LABEL_COLUMNS:
        studies[disease] = np.nan
    for disease in DISEASE_SIGNS:
        rates = CHEXPERT_RATES[disease]
        severity = studies[f"severity:{disease}"].to_numpy()
        noise_sd = np.where(train, READING_NOISE, PANEL_NOISE)
        reading = (severity + noise_sd * rng.standard_normal(len(studies))) / np.sqrt(
            1 + noise_sd**2
        )
        positive = reading > normal.inv_cdf(1 - rates.positive)
        uncertain = ~positive & (reading > normal.inv_cdf(1 - rates.positive - rates.uncertain))
        negative_share = rates.negative / (1 - rates.positive - rates.uncertain)
        mentioned_negative = rng.random(len(studies)) < negative_share
        label = np.where(
            positive, 1.0, np.where(uncertain, -1.0, np.where(mentioned_negative, 0.0, np.nan))
        )
        studies[disease] = np.where(train, label, positive.astype(float))
    _related_labels(rng, studies, train)


def _related_labels(rng, studies: pd.DataFrame, train: np.ndarray) -> None:
    """Fill CheXpert's other columns consistently, so a user may pick any of them."""
    five = studies[list(DISEASE_SIGNS)]
    any_finding = (five == 1.0).any(axis=1) | (five == -1.0).any(axis=1)
    opacity = (studies[["Edema", "Consolidation", "Atelectasis"]] == 1.0).any(axis=1)
    pneumonia = (studies["Consolidation"] == 1.0) & (rng.random(len(studies)) < 0.5)
    blank_or_zero = np.where(train, np.nan, 0.0)
    studies["No Finding"] = np.where(any_finding, blank_or_zero, 1.0)
    studies["Lung Opacity"] = np.where(opacity, 1.0, blank_or_zero)
    studies["Pneumonia"] = np.where(pneumonia, np.where(train, -1.0, 1.0), blank_or_zero)
    studies["Support Devices"] = np.where(studies["devices"], 1.0, blank_or_zero)
    for disease in (
        "Enlarged Cardiomediastinum",
        "Lung Lesion",
        "Pneumothorax",
        "Pleural Other",
        "Fracture",
    ):
        studies[disease] = blank_or_zero


def _expand_views(
    rng, studies: pd.DataFrame, lateral_fraction: float, dataset_dir: str
) -> pd.DataFrame:
    # Every study has a frontal view; a lateral is added so that laterals are lateral_fraction
    # of all images.
    p_lateral = lateral_fraction / (1 - lateral_fraction)
    has_lateral = rng.random(len(studies)) < p_lateral
    frontal = studies.assign(view_index=1, frontal=True)
    lateral = studies[has_lateral].assign(view_index=2, frontal=False, ap=False)
    images = pd.concat([frontal, lateral]).sort_values(
        ["split", "patient_index", "study_index", "view_index"], kind="stable"
    )
    images = images.sort_values(
        "split", key=lambda s: s.map({"train": 0, "valid": 1}), kind="stable"
    ).reset_index(drop=True)
    view_name = np.where(images["frontal"], "frontal", "lateral")
    images["Path"] = [
        f"{dataset_dir}/{split}/patient{p:05d}/study{s}/view{v}_{name}.jpg"
        for split, p, s, v, name in zip(
            images["split"],
            images["patient_index"],
            images["study_index"],
            images["view_index"],
            view_name,
            strict=True,
        )
    ]
    images["Sex"] = np.where(images["female"], "Female", "Male")
    images["Frontal/Lateral"] = np.where(images["frontal"], "Frontal", "Lateral")
    images["AP/PA"] = np.where(images["frontal"], np.where(images["ap"], "AP", "PA"), "")
    extra = [c for c in images.columns if c not in HEADER]
    return images[list(HEADER) + extra]
