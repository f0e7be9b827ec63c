"""Chest-radiograph phantoms: anatomy drawn from simple shapes, plus graded disease signs.

A phantom is a density map built in normalised coordinates: ``u`` runs from -1 (image left,
the patient's right) to 1 across, ``v`` from 0 (top) to 1 down. Shapes have soft edges so that
nothing aliases at small sizes. Each disease sign takes an amplitude in [0, 1] (0: absent,
about 0.5: the labelling threshold, 1: florid):

- Cardiomegaly: the cardiac silhouette widens; the cardiothoracic ratio passes 0.5 at 0.5.
- Pleural effusion: fluid fills a costophrenic angle under a meniscus, one side or both.
- Edema: a bilateral perihilar ("bat-wing") haze with mottling.
- Consolidation: a focal dense opacity with an irregular edge somewhere in a lung.
- Atelectasis: a plate-like linear opacity at a lung base, with volume loss (raised diaphragm).

Confounders that carry no label: support devices, exposure, noise, pose and body habitus.
"""

from dataclasses import dataclass

import numpy as np

DISEASE_SIGNS = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")


@dataclass(frozen=True)
class Study:
    """What a phantom shows: the signs' amplitudes and the confounders of one image."""

    amplitude: dict[str, float]
    frontal: bool = True
    ap: bool = False  # AP (portable) projection magnifies the heart, as on real films
    devices: bool = False
    female: bool = False


def render(study: Study, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Render ``study`` as a uint8 grayscale image of ``size`` = (height, width)."""
    canvas = _Canvas(size, rng)
    if study.frontal:
        _frontal(canvas, study, rng)
    else:
        _lateral(canvas, study, rng)
    return canvas.expose(rng)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Canvas:
    """Density map plus the pose-jittered coordinate grid the shapes are drawn in."""

    def __init__(self, size: tuple[int, int], rng: np.random.Generator):
        height, width = size
        self.size = size
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        u = (x + 0.5) / width * 2.0 - 1.0
        v = (y + 0.5) / height
        # Pose: a small rotation about the chest's centre, a shift and a scale (habitus, distance).
        angle = np.deg2rad(rng.normal(0.0, 2.0))
        scale = rng.uniform(0.94, 1.06)
        du, dv = rng.normal(0.0, 0.025, size=2)
        uc, vc = u - du, (v - 0.5 - dv) * 2.0
        self.u = (np.cos(angle) * uc - np.sin(angle) * vc) / scale
        self.v = (np.sin(angle) * uc + np.cos(angle) * vc) / scale / 2.0 + 0.5
        # Edges are about a pixel and a half wide whatever the resolution.
        self.edge = 1.5 / min(height, width)
        self.density = np.zeros(size, dtype=np.float32)

    def soft(self, implicit: np.ndarray, width: float = 1.0) -> np.ndarray:
        """1 inside (implicit < 0), 0 outside, with a soft edge ``width`` pixels wide."""
        return _sigmoid(-implicit / (self.edge * width))

    def ellipse(self, cu, cv, au, av, power: float = 2.0) -> np.ndarray:
        """Implicit function of a (super-)ellipse: negative inside."""
        r = np.abs((self.u - cu) / au) ** power + np.abs((self.v - cv) / av) ** power
        return r ** (1.0 / power) - 1.0

    def band(self, centre_v: np.ndarray, half_thickness: float) -> np.ndarray:
        """Implicit function of a horizontal band that follows the curve ``centre_v(u)``."""
        return np.abs(self.v - centre_v) - half_thickness

    def segment(self, start, end, half_thickness: float) -> np.ndarray:
        """Implicit function of a thick line segment from ``start`` to ``end`` in (u, v)."""
        (u0, v0), (u1, v1) = start, end
        du, dv = u1 - u0, v1 - v0
        t = np.clip(((self.u - u0) * du + (self.v - v0) * dv) / (du * du + dv * dv), 0.0, 1.0)
        return np.hypot(self.u - (u0 + t * du), self.v - (v0 + t * dv)) - half_thickness

    def smooth_noise(self, rng: np.random.Generator, cells: int) -> np.ndarray:
        """Zero-mean, unit-scale noise varying over about 1/``cells`` of the image."""
        coarse = rng.normal(0.0, 1.0, size=(cells + 1, cells + 1)).astype(np.float32)
        height, width = self.size
        ys = np.linspace(0, cells, height, dtype=np.float32)
        xs = np.linspace(0, cells, width, dtype=np.float32)
        y0 = np.minimum(ys.astype(int), cells - 1)
        x0 = np.minimum(xs.astype(int), cells - 1)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        c00 = coarse[np.ix_(y0, x0)]
        c01 = coarse[np.ix_(y0, x0 + 1)]
        c10 = coarse[np.ix_(y0 + 1, x0)]
        c11 = coarse[np.ix_(y0 + 1, x0 + 1)]
        top = c00 * (1 - fx) + c01 * fx
        bottom = c10 * (1 - fx) + c11 * fx
        return top * (1 - fy) + bottom * fy

    def expose(self, rng: np.random.Generator) -> np.ndarray:
        """Film response: exposure and contrast vary per image, then quantum noise."""
        gain = rng.uniform(0.85, 1.15)
        gamma = rng.uniform(0.8, 1.2)
        image = gain * np.clip(self.density, 0.0, None) ** gamma + rng.uniform(-0.04, 0.04)
        image = image + rng.uniform(0.01, 0.035) * rng.standard_normal(self.size)
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _frontal(c: _Canvas, study: Study, rng: np.random.Generator) -> None:
    amp = study.amplitude
    half_width = rng.uniform(0.62, 0.70) * (0.95 if study.female else 1.0)
    lung_top = rng.uniform(0.12, 0.16)
    diaphragm = rng.uniform(0.76, 0.81)  # depth of inspiration
    atelectasis_side = rng.choice((-1, 1))
    volume_loss = 0.07 * amp["Atelectasis"]

    # Soft tissue of the trunk, shoulders above.
    body = c.soft(c.ellipse(0.0, 0.58, half_width + 0.2, 0.62, power=4.0), 4)
    c.density += 0.40 * body

    # Lungs: lateral ellipses cut by domed hemidiaphragms (the right one, image left, sits higher).
    lungs = np.zeros_like(c.density)
    domes = {}
    for side in (-1, 1):
        centre = side * half_width * 0.55
        base = diaphragm - (0.025 if side < 0 else 0.0)
        if side == atelectasis_side:
            base -= volume_loss
        dome = base - 0.07 * np.clip(1.0 - ((c.u - centre) / (half_width * 0.5)) ** 2, 0.0, 1.0)
        domes[side] = (dome, base)
        outline = c.ellipse(centre, (lung_top + base) / 2, half_width * 0.45, (base - lung_top) / 2)
        lungs = np.maximum(lungs, c.soft(outline, 2) * c.soft(c.v - dome, 2))

    # Heart: the cardiothoracic ratio sets its width against the thorax's.
    ctr = 0.43 + 0.17 * amp["Cardiomegaly"] + rng.normal(0.0, 0.015)
    if study.ap:
        ctr *= 1.08
    heart_width = ctr * 2.0 * half_width * 0.98
    heart = c.soft(c.ellipse(0.12 * heart_width, diaphragm - 0.09, heart_width / 2, 0.14), 2)
    mediastinum = c.soft(c.ellipse(0.01, 0.33, 0.085, 0.28, power=3.0), 2)
    aortic_knob = c.soft(c.ellipse(0.09, 0.27, 0.05, 0.04), 2)
    solid = np.maximum(np.maximum(heart, mediastinum), aortic_knob)
    lungs = lungs * (1.0 - solid)

    vessels = c.smooth_noise(rng, 24) * 0.5 + c.smooth_noise(rng, 10)
    hilar = np.exp(-(((np.abs(c.u) - 0.22) / 0.22) ** 2 + ((c.v - 0.45) / 0.2) ** 2))
    c.density += lungs * (-0.30 + 0.025 * vessels + 0.06 * hilar)
    c.density += 0.06 * solid * body

    # Below the diaphragm: liver and abdomen.
    below = np.maximum(
        c.soft(domes[-1][0] - c.v, 2) * (c.u < 0), c.soft(domes[1][0] - c.v, 2) * (c.u >= 0)
    )
    c.density += 0.10 * below * body

    _skeleton(c, half_width, lung_top, diaphragm, rng)
    _pleural_effusion(c, amp["Pleural Effusion"], lungs, domes, half_width, rng)
    _edema(c, amp["Edema"], lungs, rng)
    _consolidation(c, amp["Consolidation"], lungs, half_width, lung_top, diaphragm, rng)
    _atelectasis(c, amp["Atelectasis"], atelectasis_side, domes, half_width, rng)
    if study.devices:
        _devices(c, rng)


def _skeleton(c: _Canvas, half_width, lung_top, diaphragm, rng) -> None:
    thorax = c.soft(c.ellipse(0.0, (lung_top + diaphragm) / 2, half_width * 1.02, 0.42), 3)
    ribs = np.zeros_like(c.density)
    spacing = (diaphragm - lung_top) / 8.5
    for side in (-1, 1):
        lateral = np.clip(side * c.u, 0.0, None) / half_width
        for k in range(9):
            # Posterior ribs rise from the spine, then curve down towards the axilla.
            centre = lung_top + 0.01 + k * spacing - 0.06 * lateral + 0.16 * lateral**2
            ribs = np.maximum(ribs, c.soft(c.band(centre, 0.011), 1.5) * (side * c.u > 0.04))
    c.density += 0.08 * ribs * thorax
    spine = c.soft(np.abs(c.u) - 0.045, 2)
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * c.v / (spacing * 0.9))
    c.density += (0.05 + 0.03 * vertebrae) * spine * c.soft(c.v - 0.95, 2)
    for side in (-1, 1):
        clavicle = c.segment((side * 0.07, lung_top + 0.04), (side * 0.55, lung_top - 0.03), 0.016)
        c.density += 0.14 * c.soft(clavicle, 1.5)


def _pleural_effusion(c: _Canvas, amp, lungs, domes, half_width, rng) -> None:
    if amp < 0.02:
        return
    sides = (-1, 1) if rng.random() < 0.25 + 0.5 * amp else (rng.choice((-1, 1)),)
    for side in sides:
        height = 0.2 * amp**1.3 * rng.uniform(0.8, 1.2)
        _, base = domes[side]
        lateral = np.clip((side * c.u - 0.1) / (half_width * 0.8), 0.0, 1.0)
        # The meniscus climbs the lateral chest wall: fluid is highest at the costophrenic angle.
        meniscus = base - height * (0.3 + 0.7 * lateral**1.5)
        fluid = c.soft(meniscus - c.v, 2) * (side * c.u > 0)
        c.density += 0.30 * fluid * np.clip(lungs * 1.4, 0.0, 1.0)


def _edema(c: _Canvas, amp, lungs, rng) -> None:
    if amp < 0.02:
        return
    perihilar = np.exp(-(((np.abs(c.u) - 0.2) / 0.24) ** 2 + ((c.v - 0.47) / 0.2) ** 2))
    mottling = 1.0 + 0.35 * c.smooth_noise(rng, 20)
    c.density += 0.22 * amp * perihilar * mottling * lungs


def _consolidation(c: _Canvas, amp, lungs, half_width, lung_top, diaphragm, rng) -> None:
    if amp < 0.02:
        return
    side = rng.choice((-1, 1))
    cu = side * half_width * rng.uniform(0.3, 0.75)
    cv = rng.uniform(lung_top + 0.2, diaphragm - 0.1)
    radius = 0.06 + 0.13 * amp
    edge = c.ellipse(cu, cv, radius, radius * rng.uniform(0.8, 1.3)) + 0.3 * c.smooth_noise(rng, 12)
    c.density += 0.32 * min(1.0, 0.4 + amp) * c.soft(edge, 3) * lungs


def _atelectasis(c: _Canvas, amp, side, domes, half_width, rng) -> None:
    if amp < 0.02:
        return
    _, base = domes[side]
    cu = side * half_width * rng.uniform(0.35, 0.6)
    cv = base - rng.uniform(0.08, 0.14)
    tilt = rng.normal(0.0, 0.06)
    length = 0.12 + 0.1 * amp
    plate = c.segment((cu - length, cv - tilt), (cu + length, cv + tilt), 0.006 + 0.01 * amp)
    c.density += 0.30 * min(1.0, 0.3 + amp) * c.soft(plate, 1.5)


def _devices(c: _Canvas, rng) -> None:
    """Lines, tubes and ECG leads: bright, sharp, and correlated with illness, not with a label."""
    start = (rng.uniform(-0.6, -0.3), rng.uniform(0.1, 0.2))
    bend = (rng.uniform(-0.15, 0.0), rng.uniform(0.28, 0.35))
    tip = (rng.uniform(0.0, 0.08), rng.uniform(0.38, 0.5))
    line = np.minimum(c.segment(start, bend, 0.004), c.segment(bend, tip, 0.004))
    c.density += 0.5 * c.soft(line, 1)
    for _ in range(rng.integers(1, 4)):
        lead = c.ellipse(rng.uniform(-0.7, 0.7), rng.uniform(0.15, 0.75), 0.025, 0.025)
        c.density += 0.45 * c.soft(np.abs(lead) - 0.25, 1)


def _lateral(c: _Canvas, study: Study, rng: np.random.Generator) -> None:
    """A lateral view (anterior on the image left): the same signs, seen side on."""
    amp = study.amplitude
    body = c.soft(c.ellipse(0.0, 0.57, 0.72, 0.6, power=4.0), 4)
    c.density += 0.45 * body
    diaphragm = rng.uniform(0.76, 0.81)
    dome = diaphragm - 0.08 * np.clip(1.0 - (c.u / 0.5) ** 2, 0.0, 1.0)
    lung = c.soft(c.ellipse(0.03, 0.46, 0.52, 0.36), 2) * c.soft(c.v - dome, 2)
    ctr = 0.43 + 0.17 * amp["Cardiomegaly"] + rng.normal(0.0, 0.015)
    heart = c.soft(c.ellipse(-0.2, diaphragm - 0.13, 0.55 * ctr, 0.15), 2)
    lung = lung * (1.0 - heart)
    c.density += lung * (-0.30 + 0.025 * c.smooth_noise(rng, 16)) + 0.05 * heart
    spine = c.soft(np.abs(c.u - 0.58) - 0.08, 2) * c.soft(c.v - 0.95, 2)
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * c.v / 0.07)
    c.density += (0.08 + 0.05 * vertebrae) * spine
    c.density += 0.1 * c.soft(c.segment((-0.62, 0.2), (-0.6, 0.65), 0.012), 1.5)  # sternum
    if amp["Pleural Effusion"] >= 0.02:
        meniscus = diaphragm - 0.2 * amp["Pleural Effusion"] * np.clip(c.u / 0.5, 0.0, 1.0) ** 1.5
        c.density += 0.28 * c.soft(meniscus - c.v, 2) * np.clip(lung * 1.4, 0.0, 1.0)
    if amp["Edema"] >= 0.02:
        haze = np.exp(-((c.u / 0.3) ** 2 + ((c.v - 0.47) / 0.22) ** 2))
        c.density += 0.18 * amp["Edema"] * haze * lung
    if amp["Consolidation"] >= 0.02:
        radius = 0.05 + 0.08 * amp["Consolidation"]
        blob = c.ellipse(rng.uniform(-0.2, 0.3), rng.uniform(0.35, 0.65), radius, radius)
        c.density += 0.28 * c.soft(blob + 0.3 * c.smooth_noise(rng, 12), 3) * lung
    if amp["Atelectasis"] >= 0.02:
        cv = diaphragm - rng.uniform(0.08, 0.14)
        plate = c.segment((-0.15, cv), (0.3, cv + 0.03), 0.006 + 0.01 * amp["Atelectasis"])
        c.density += 0.28 * min(1.0, 0.3 + amp["Atelectasis"]) * c.soft(plate, 1.5)
    if study.devices:
        _devices(c, rng)
