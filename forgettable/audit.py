"""Honest audits of a forgotten class, each against a retrained oracle (same recipe, class never seen).

The paper (arXiv 2509.15230) reports retain/forget accuracy; its code has no MIA or extraction attack. Because
the KL-to-uniform term makes a forgotten class's outputs uninformative for members and non-members alike, an
output-level MIA near 0.5 proves little by itself, so every number here comes with a reference: the oracle's
value, and for the MIA positive controls (the same attack where members are known to be seen) showing its power.

- retain / forget accuracy, unmasked (the forgotten logit stays in a shared head, nothing is hidden); retain
  accuracy before forgetting both unmasked and restricted to the retained classes (a weak model's confusions
  into the forgotten class become correct answers once it is gone, which the unmasked difference counts);
- balanced membership inference: training members vs held-out samples of the same class, AUC with a bootstrap
  95% CI; statistics `loss` (the true class's log-odds, a monotone function of the loss, Yeom et al.) when the
  model still has an output for the class, and `confidence` (the top class's log-odds, label-free) for every
  model, the oracle too; both computed from logits (`logit_margin`) so that confident outputs do not tie, and
  averaged over the training augmentations (`view_logits`); positive controls: the same attacks on a retained
  class (the issue's), on all retained classes pooled (more samples: power to see a small effect), and on the
  forgotten class in the model *before* forgetting (same samples: does the attack see these members when the
  class is there?); and `calibrated`, the confidence minus the oracle's on the same image (difficulty
  calibration, Watson et al. 2022), whose null is exactly 0.5;
- linear-probe leakage: logistic regression "forgotten class vs rest" on CLS features;
- re-learning: a new prompt (plus a head row where the model lacks one) optimised on n samples per class;
- checkpoint hygiene: no key, optimiser moment or saved tensor row with cosine > 0.9 to the deleted prompt.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from forgettable.checkpoint import read_checkpoint, stale_copies
from forgettable.data import LabeledImages
from forgettable.model import PreForgettableModel
from protect.errors import ConfigError

RELEARN_NS = (1, 5, 20)


@dataclass
class MIAResult:
    """Balanced membership-inference AUC (0.5 = no signal) with a bootstrap 95% CI."""

    statistic: str
    auc: float
    ci_low: float
    ci_high: float
    n_members: int
    n_nonmembers: int


@dataclass
class RelearnPoint:
    """Mean accuracy over draws after a re-attached prompt was optimised on `n` samples per class."""

    n: int
    forget_acc: float
    retain_acc: float
    forget_acc_draws: list[float] = field(default_factory=list)
    shots: int | None = None  # samples per class actually drawn: fewer than n when a class has fewer to give


@dataclass
class Hygiene:
    """What a saved checkpoint still holds of a deleted prompt."""

    prompt_keys: list[str]
    optimizer_keys: list[str]
    max_cosine: float | None
    similar_tensors: list[str]
    stale_copies: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.prompt_keys or self.optimizer_keys or self.similar_tensors or self.stale_copies)


@dataclass
class ModelAudit:
    """One model's side of the audit (the forgetful model or its oracle)."""

    retain_acc: float
    forget_acc: float
    forget_entropy: float
    mia: dict[str, MIAResult]
    mia_control: dict[str, MIAResult]
    mia_control_pooled: dict[str, MIAResult]
    probe_auc: float
    probe_ci: tuple[float, float]
    relearn: list[RelearnPoint]


@dataclass
class AuditReport:
    """Everything `protect model audit` prints; `checks` holds the pass/fail verdicts against the oracle."""

    forgotten: str
    control_class: str
    n_classes: int
    before: dict[str, float] | None
    model: ModelAudit
    oracle: ModelAudit
    hygiene: Hygiene | None
    mia_before: dict[str, MIAResult] = field(default_factory=dict)
    checks: dict[str, bool | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.hygiene is not None:
            out["hygiene"]["passed"] = self.hygiene.passed
        return out


def _ids(model: PreForgettableModel, data: LabeledImages) -> np.ndarray:
    """Data labels as model class ids; -1 where the model has no such class (the oracle's forgotten class)."""
    names = model.config.class_names
    table = np.array([names.index(n) if n in names else -1 for n in data.class_names])
    return table[data.y]


def accuracy(model: PreForgettableModel, data: LabeledImages, *, among: list[str] | None = None) -> float:
    """Top-1 accuracy with the model's remaining bank (nan on an empty set).

    Nothing is masked by default; `among` restricts the argmax to those classes (the "before" model scored
    as a classifier over the retained classes only, so a before/after difference is not just the removal of
    confusions into the forgotten class).
    """
    if len(data) == 0:
        return math.nan
    p = model.predict_proba(data.x)
    if among is not None:
        p[:, [i for i, n in enumerate(model.config.class_names) if n not in among]] = -1.0
    return float((p.argmax(1) == _ids(model, data)).mean())


def mean_entropy(model: PreForgettableModel, data: LabeledImages) -> float:
    """Mean output entropy (nats): ~log C on a forgotten class, low on an oracle's confident mislabels."""
    p = model.predict_proba(data.x)
    return float(-(np.where(p > 0, p * np.log(np.maximum(p, 1e-30)), 0)).sum(1).mean())


def logit_margin(logits: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of class `idx[i]` in row i, from the logits in float64.

    The stable logit scaling of LiRA (Carlini et al., arXiv 2112.03570): a monotone function of the class's
    probability (so the AUC is the loss attack's), without the float32 saturation that ties confident outputs
    at p = 1 when computed from probabilities.
    """
    z = np.asarray(logits, np.float64)
    rows = np.arange(len(z))
    rest = z.copy()
    rest[rows, idx] = -np.inf
    with np.errstate(divide="ignore"):
        return z[rows, idx] - logsumexp(rest, axis=1)


STATISTICS = ("loss", "confidence", "calibrated")


def _translate(x: torch.Tensor, dy: int, dx: int, pad: int) -> torch.Tensor:
    """`x` moved by (dy, dx) pixels with reflect padding (the training augmentation, one fixed offset)."""
    if not pad:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


@torch.no_grad()
def view_logits(model: PreForgettableModel, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits (V, N, C) on the views the model was trained with: shifts by {-s, 0, s} pixels per axis and, with
    flips, their mirror images (one view for a model trained without augmentation).

    Querying the training augmentations and averaging strengthens a membership attack (Carlini et al., LiRA,
    arXiv 2112.03570): a member was fitted in every view, a non-member in none.
    """
    s = int(model.recipe.get("shift", 0))
    flip = bool(model.recipe.get("hflip", False))
    offsets = sorted({-s, 0, s})
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = model.preprocess(images[i : i + batch_size])
        moved = [_translate(x, dy, dx, s) for dy in offsets for dx in offsets]
        views = moved + [v.flip(-1) for v in moved] if flip else moved
        out.append(torch.stack([model(v) for v in views]).cpu())
    model.train(was)
    if not out:
        return np.zeros((1, 0, len(model.config.class_names)), np.float32)
    return torch.cat(out, dim=1).numpy()


def _scores(model: PreForgettableModel, data: LabeledImages, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample statistics, averaged over views; `loss` only where the model has an output for the class."""
    out = {"confidence": np.mean([logit_margin(z, z.argmax(1)) for z in logits], axis=0)}
    ids = _ids(model, data)
    rows = np.arange(len(ids))
    if (ids >= 0).all() and np.isfinite(logits[:, rows, np.maximum(ids, 0)]).all():
        out["loss"] = np.mean([logit_margin(z, ids) for z in logits], axis=0)
    return out


def membership_auc(
    model: PreForgettableModel,
    members: LabeledImages,
    nonmembers: LabeledImages,
    *,
    reference: PreForgettableModel | None = None,
    seed: int = 0,
    bootstrap: int = 200,
) -> dict[str, MIAResult]:
    """Balanced (equal-size) threshold MIAs, one per statistic that is defined (`loss` needs a class output).

    With a `reference` that trained on neither set (the oracle, for the forgotten class), the statistic
    `calibrated` is the model's confidence minus the reference's on the same sample: difficulty calibration
    (Watson et al., ICLR 2022, arXiv 2111.08440), which removes how easy each image is where the two models
    agree on it. Its null is exactly 0.5: a model that never saw the members treats them like the non-members
    relative to any reference that never saw either. It adds power only where the reference's confidence
    tracks the model's; on a class the reference cannot output, it can add noise instead, so it complements
    the uncalibrated attacks rather than replacing them.
    """
    rng = np.random.default_rng(seed)
    n = min(len(members), len(nonmembers))
    if n < 2:
        return {}
    mem = members.take(rng.permutation(len(members))[:n])
    non = nonmembers.take(rng.permutation(len(nonmembers))[:n])
    s_mem = _scores(model, mem, view_logits(model, mem.x))
    s_non = _scores(model, non, view_logits(model, non.x))
    if reference is not None:
        for scores, data in ((s_mem, mem), (s_non, non)):
            ref = _scores(reference, data, view_logits(reference, data.x))["confidence"]
            scores["calibrated"] = scores["confidence"] - ref
    labels = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
    out = {}
    for stat in STATISTICS:
        if stat in s_mem and stat in s_non:
            scores = np.concatenate([s_mem[stat], s_non[stat]])
            out[stat] = MIAResult(stat, *auc_with_ci(labels, scores, rng=rng, bootstrap=bootstrap), n, n)
    return out


def auc_with_ci(
    labels: np.ndarray, scores: np.ndarray, *, rng: np.random.Generator, bootstrap: int = 200
) -> tuple[float, float, float]:
    """ROC AUC and its 95% CI from a bootstrap that resamples positives and negatives separately.

    AUC = P(score_pos > score_neg) + P(tie) / 2 over pairs; a resample only reweights the pairs, so every
    bootstrap AUC is one weighted sum over the same pair matrix (equal to sklearn's `roc_auc_score` on the
    resampled set, ~100x faster than calling it 200 times).
    """
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    if not len(pos) or not len(neg):
        raise ValueError(f"an AUC needs positives and negatives, got {len(pos)} and {len(neg)}")
    sp, sn = scores[pos][:, None], scores[neg][None, :]
    pairs = (sp > sn) + 0.5 * (sp == sn)
    w_pos, w_neg = np.zeros((bootstrap, len(pos))), np.zeros((bootstrap, len(neg)))
    for b in range(bootstrap):
        w_pos[b] = np.bincount(rng.choice(len(pos), len(pos)), minlength=len(pos))
        w_neg[b] = np.bincount(rng.choice(len(neg), len(neg)), minlength=len(neg))
    aucs = np.einsum("bi,ij,bj->b", w_pos, pairs, w_neg) / (len(pos) * len(neg))
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(pairs.mean()), float(low), float(high)


@torch.no_grad()
def features(model: PreForgettableModel, data: LabeledImages, *, batch_size: int = 256) -> np.ndarray:
    """CLS features with the remaining bank."""
    model.eval()
    out = [
        model.features(model.preprocess(data.x[i : i + batch_size])).cpu()
        for i in range(0, len(data), batch_size)
    ]
    return torch.cat(out).numpy()


def probe_auc(
    model: PreForgettableModel, fit: LabeledImages, test: LabeledImages, target: str, *, seed: int = 0
) -> tuple[float, float, float]:
    """AUC (and 95% CI) of a linear probe "target vs rest" on the model's features, fitted on `fit`."""
    c = fit.class_names.index(target)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    probe.fit(features(model, fit), fit.y == c)
    scores = probe.decision_function(features(model, test))
    return auc_with_ci(test.y == c, scores, rng=np.random.default_rng(seed))


def _few_shot(data: LabeledImages, n: int, seed: int) -> LabeledImages:
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(data.y == c))[:n] for c in range(len(data.class_names))]
    return data.take(np.concatenate(idx))


def relearn(
    model: PreForgettableModel,
    attack: LabeledImages,
    test: LabeledImages,
    target: str,
    *,
    ns: tuple[int, ...] = RELEARN_NS,
    steps: int = 100,
    lr: float = 0.05,
    draws: int = 3,
    seed: int = 0,
) -> list[RelearnPoint]:
    """Re-attach attack: a fresh prompt for `target` (and a head row where the model has none; an existing
    shared-head row is reused and tuned) optimised with Adam on n samples of every class; the rest frozen.
    Averaged over `draws` independent draws of the samples and of the prompt's initialisation."""
    # classes the model already forgot before this audit are neither attacked nor scored: it has no id for them
    known = set(model.config.class_names)
    attack = _subset(attack, [n for n in attack.class_names if n in known or n == target])
    retained = _subset(test, [name for name in test.class_names if name != target and name in known])
    smallest = np.bincount(attack.y)[np.unique(attack.y)].min()  # per class present, to draw from
    points = []
    for n in ns:
        forget, retain = [], []
        for draw in range(draws):
            m = _reattach(model, _few_shot(attack, n, seed + 1000 * draw), target, steps, lr, seed + draw)
            forget.append(accuracy(m, test.of_class(target)))
            retain.append(accuracy(m, retained))
        shots = int(min(n, smallest))
        points.append(RelearnPoint(n, float(np.mean(forget)), float(np.mean(retain)), forget, shots))
    return points


def _reattach(
    model: PreForgettableModel, shots: LabeledImages, target: str, steps: int, lr: float, seed: int
) -> PreForgettableModel:
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    m.requires_grad_(False)
    c = m.attach_prompt_(target)
    params: list[torch.Tensor] = [m.prompts[str(c)]]
    if m.config.head == "shared":
        mask = torch.zeros_like(m.head.weight[:, :1])
        mask[c] = 1
        m.head.weight.requires_grad_(True)
        m.head.bias.requires_grad_(True)
        m.head.weight.register_hook(lambda g: g * mask)
        m.head.bias.register_hook(lambda g: g * mask[:, 0])
        params += [m.head.weight, m.head.bias]
    x = m.preprocess(shots.x)
    y = torch.as_tensor(_ids(m, shots), device=m.device)
    opt = torch.optim.Adam(params, lr=lr)
    m.eval()  # no dropout; only the attacker's tensors move
    for _ in range(steps):
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m


def _subset(data: LabeledImages, names: list[str]) -> LabeledImages:
    ids = [data.class_names.index(n) for n in names]
    return data.take(np.flatnonzero(np.isin(data.y, ids)))


def checkpoint_hygiene(directory: str | Path, class_id: int, deleted: torch.Tensor | None) -> Hygiene:
    """Scan a saved checkpoint for what remains of prompt `class_id` (cosine needs the prompt), and its folder's
    surroundings for copies an interrupted save left behind."""
    _, weights, optimizer = read_checkpoint(directory)
    prompt_keys = [k for k in weights if k == f"prompts.{class_id}" or k.startswith(f"prompts.{class_id}.")]
    opt_keys = [k for k in optimizer if k.startswith(f"prompts.{class_id}.")]
    stale = [str(p) for p in stale_copies(directory)]
    if deleted is None:
        return Hygiene(prompt_keys, opt_keys, None, [], stale)
    ref = deleted.detach().float().cpu().flatten()
    best, similar = -1.0, []
    for prefix, tensors in (("model", weights), ("optimizer", optimizer)):
        for key, t in tensors.items():
            if t.ndim == 0 or t.shape[-1] != ref.numel():
                continue
            cos = F.cosine_similarity(t.float().reshape(-1, ref.numel()), ref.unsqueeze(0), dim=1)
            top = float(cos.max())
            best = max(best, top)
            if top > 0.9:
                similar.append(f"{prefix}:{key}")
    return Hygiene(prompt_keys, opt_keys, best, similar, stale)


def halves(holdout: LabeledImages, seed: int) -> tuple[LabeledImages, LabeledImages]:
    """Stratified halves of the held-out data: A (the attacker's samples, probe fitting), B (evaluation)."""
    rng = np.random.default_rng(seed)
    in_a = np.zeros(len(holdout), bool)
    for c in range(len(holdout.class_names)):
        idx = rng.permutation(np.flatnonzero(holdout.y == c))
        in_a[idx[: len(idx) // 2]] = True
    return holdout.take(np.flatnonzero(in_a)), holdout.take(np.flatnonzero(~in_a))


def audit_model(
    model: PreForgettableModel,
    *,
    train: LabeledImages,
    holdout: LabeledImages,
    forgotten: str,
    control: str,
    seed: int = 0,
    ns: tuple[int, ...] = RELEARN_NS,
    relearn_steps: int = 100,
    reference: PreForgettableModel | None = None,
) -> ModelAudit:
    """Every behavioural check for one model; `holdout` is split in halves A (attacker) and B (evaluation).

    `reference` (a model that never saw `forgotten`) calibrates the forgotten-class MIA."""
    part_a, part_b = halves(holdout, seed)
    retained = [n for n in holdout.class_names if n != forgotten]
    probe = probe_auc(model, part_a, part_b, forgotten, seed=seed)
    return ModelAudit(
        retain_acc=accuracy(model, _subset(part_b, retained)),
        forget_acc=accuracy(model, part_b.of_class(forgotten)),
        forget_entropy=mean_entropy(model, part_b.of_class(forgotten)),
        mia=membership_auc(
            model, train.of_class(forgotten), holdout.of_class(forgotten), reference=reference, seed=seed
        ),
        mia_control=membership_auc(model, train.of_class(control), holdout.of_class(control), seed=seed),
        mia_control_pooled=membership_auc(
            model, _subset(train, retained), _subset(holdout, retained), seed=seed
        ),
        probe_auc=probe[0],
        probe_ci=(probe[1], probe[2]),
        relearn=relearn(model, part_a, part_b, forgotten, ns=ns, seed=seed, steps=relearn_steps),
    )


def has_power(
    results: dict[str, MIAResult], statistics: tuple[str, ...] = ("loss", "confidence")
) -> bool | None:
    """Whether every one of `statistics` that ran on a positive control finds members (95% CI above 0.5);
    None if none ran."""
    ran = [r for s, r in results.items() if s in statistics]
    return None if not ran else all(r.ci_low > 0.5 for r in ran)


def audit_forgetting(
    after: PreForgettableModel,
    oracle: PreForgettableModel,
    *,
    train: LabeledImages,
    holdout: LabeledImages,
    forgotten: str,
    before: PreForgettableModel | None = None,
    hygiene: Hygiene | None = None,
    seed: int = 0,
    ns: tuple[int, ...] = RELEARN_NS,
    relearn_steps: int = 100,
) -> AuditReport:
    """Audit `after` (class `forgotten` deleted) against `oracle` (never saw it); `before` adds retain drift.

    `train` holds the training members, `holdout` samples of every class that no model trained on.
    """
    control = next(n for n in holdout.class_names if n != forgotten and n in after.config.present_names)
    kw = dict(train=train, holdout=holdout, forgotten=forgotten, control=control, seed=seed, ns=ns)
    pf = audit_model(after, **kw, relearn_steps=relearn_steps, reference=oracle)  # type: ignore[arg-type]
    ref = audit_model(oracle, **kw, relearn_steps=relearn_steps)  # type: ignore[arg-type]
    part_b = halves(holdout, seed)[1]
    n_forget = len(part_b.of_class(forgotten))
    retained = [n for n in holdout.class_names if n != forgotten]
    report = AuditReport(forgotten, control, len(after.config.class_names), None, pf, ref, hygiene)
    if before is not None:
        report.before = {
            "retain_acc": accuracy(before, _subset(part_b, retained)),
            "retain_acc_restricted": accuracy(before, _subset(part_b, retained), among=retained),
            "forget_acc": accuracy(before, part_b.of_class(forgotten)),
        }
        report.mia_before = membership_auc(
            before, train.of_class(forgotten), holdout.of_class(forgotten), reference=oracle, seed=seed
        )
    chance = 1 / report.n_classes
    margin = 1.96 * math.sqrt(chance * (1 - chance) / max(n_forget, 1))
    before_acc = report.before or {}
    checks: dict[str, bool | None] = {
        "retain_delta_le_2pp": None
        if not before_acc
        else abs(before_acc["retain_acc"] - pf.retain_acc) <= 0.02,
        "retain_delta_restricted_le_2pp": None
        if not before_acc
        else abs(before_acc["retain_acc_restricted"] - pf.retain_acc) <= 0.02,
        "forget_acc_at_or_below_chance": pf.forget_acc <= chance + margin,
    }
    mine, theirs = pf.mia.get("confidence"), ref.mia.get("confidence")
    checks["mia_within_oracle_ci"] = (
        None if mine is None or theirs is None else (theirs.ci_low <= mine.auc <= theirs.ci_high)
    )
    # Every statistic's control must find members, the confidence attack (the verdict above) included.
    checks["mia_control_has_power"] = has_power(pf.mia_control)
    checks["mia_control_pooled_has_power"] = has_power(pf.mia_control_pooled)
    checks["mia_before_has_power"] = has_power(report.mia_before)
    calibrated = pf.mia.get("calibrated")
    checks["mia_calibrated_at_null"] = (
        None if calibrated is None else calibrated.ci_low <= 0.5 <= calibrated.ci_high
    )
    checks["mia_calibrated_before_has_power"] = (
        has_power(report.mia_before, ("calibrated",)) if report.mia_before else None
    )
    checks["probe_not_above_oracle_ci"] = pf.probe_auc <= ref.probe_ci[1]
    checks["relearn_not_faster_than_oracle"] = all(
        a.forget_acc <= b.forget_acc + 1.96 * math.sqrt(max(p * (1 - p), 0.01) * 2 / max(n_forget, 1))
        for a, b in zip(pf.relearn, ref.relearn, strict=True)
        for p in [(a.forget_acc + b.forget_acc) / 2]
    )
    checks["checkpoint_hygiene"] = None if hygiene is None else hygiene.passed
    report.checks = checks
    if not any(checks[k] for k in ("mia_control_has_power", "mia_control_pooled_has_power")):
        report.notes.append("the positive controls have no power: an MIA AUC near 0.5 says nothing here")
    if hygiene is not None and hygiene.max_cosine is None:
        report.notes.append("cosine hygiene not run: the deleted prompt was not available (pass --original)")
    return report


MIN_HELD_OUT = 4  # per class: two halves (attack samples, evaluation) of at least two


def check_audit_data(train: LabeledImages, holdout: LabeledImages, forgotten: str) -> None:
    """Enough images per class for every attack, or one clear error (not a failure deep inside one)."""
    for name, part, need in (("held-out", holdout, MIN_HELD_OUT), ("training", train, 2)):
        counts = np.bincount(part.y, minlength=len(part.class_names))
        short = [f"{c} ({n})" for c, n in zip(part.class_names, counts, strict=True) if n < need]
        if short:
            raise ConfigError(
                f"the audit needs at least {need} {name} images of every class; too few: {', '.join(short)}"
            )
    if forgotten not in holdout.class_names:
        raise ConfigError(f"DATA has no images of {forgotten!r}")


def check_oracle(oracle: PreForgettableModel, forgotten: str, kept: list[str], where: str | Path) -> None:
    """An oracle never saw the forgotten class and knows every class the audited model keeps."""
    if forgotten in oracle.config.present_names:
        raise ConfigError(f"--oracle {where} predicts {forgotten!r}: an oracle is trained without it")
    missing = [n for n in kept if n not in oracle.config.present_names]
    if missing:
        raise ConfigError(f"--oracle {where} lacks classes the model keeps: {', '.join(missing)}")


def check_disjoint(train: LabeledImages, holdout: LabeledImages) -> None:
    """`--holdout` images must be non-members: one that the model trained on would count as unseen and make
    the membership-inference test meaningless."""
    seen = {hashlib.sha256(np.ascontiguousarray(img).tobytes()).digest() for img in train.x}
    shared = sum(hashlib.sha256(np.ascontiguousarray(img).tobytes()).digest() in seen for img in holdout.x)
    if shared:
        raise ConfigError(
            f"--holdout holds {shared} of the {len(train.x)} images the model trained on; it must hold images "
            "the model never saw"
        )


def check_original(
    before: PreForgettableModel, model: PreForgettableModel, cid: int, where: str | Path
) -> None:
    """`--original` is this model before forgetting: same classes, it still has the prompt, and every weight
    but the prompts is the same (forgetting deletes prompts only), so an unrelated model is refused."""
    name = model.config.class_names[cid]
    refusal = ConfigError(f"--original {where} is not this model before forgetting {name!r}")
    if before.config.class_names != model.config.class_names or str(cid) not in before.prompts:
        raise refusal
    mine, theirs = _shared(model), _shared(before)
    if mine.keys() != theirs.keys() or any(
        mine[k].shape != theirs[k].shape or not torch.equal(mine[k], theirs[k]) for k in mine
    ):
        raise refusal


def _shared(model: PreForgettableModel) -> dict[str, torch.Tensor]:
    """The weights forgetting leaves alone: everything but the per-class prompts."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("prompts.")}


def audit_directory(
    model_dir: str | Path,
    data: LabeledImages,
    forgotten: str,
    *,
    holdout: LabeledImages | None = None,
    oracle_dir: str | Path | None = None,
    original_dir: str | Path | None = None,
    backbone_state: dict[str, torch.Tensor] | None = None,
    device: str = "cpu",
    seed: int = 0,
    relearn_steps: int = 100,
) -> AuditReport:
    """`protect model audit`: audit the model at `model_dir` for class `forgotten`.

    If the class is still in the model, the audit forgets it into a temporary folder (the real code path) and
    audits that, with the model as "before"; otherwise `original_dir` (optional) gives "before" and the
    deleted prompt for the cosine hygiene test. Without `holdout`, DATA must be the training data: the model's
    recorded split gives the held-out non-members. Without `oracle_dir`, the oracle is retrained with the
    model's recipe.
    """
    import tempfile

    from forgettable.data import split_holdout
    from forgettable.forget import forget_checkpoint
    from forgettable.train import Recipe, train_oracle

    model = PreForgettableModel.from_pretrained(model_dir, device=device)
    cid = model.config.class_id(forgotten)
    if sorted(data.class_names) != sorted(model.config.class_names):
        raise ConfigError(
            f"DATA classes {data.class_names} differ from the model's {model.config.class_names}"
        )
    recipe = Recipe.stored(model.recipe, Path(model_dir) / "config.json")
    if recipe.data_fingerprint and recipe.data_fingerprint != data.fingerprint():
        raise ConfigError("DATA is not the data this model was trained on; the audit needs exactly that data")
    if holdout is None:
        if recipe.holdout_fraction <= 0:
            raise ConfigError("the model was trained without a held-out split; pass --holdout")
        train, holdout = split_holdout(data, fraction=recipe.holdout_fraction, seed=recipe.seed)
    else:
        train = split_holdout(data, fraction=recipe.holdout_fraction, seed=recipe.seed)[0]
        check_disjoint(train, holdout)
    check_audit_data(train, holdout, forgotten)
    original = None
    if original_dir is not None and str(cid) not in model.prompts:
        original = PreForgettableModel.from_pretrained(original_dir, device=device)
        check_original(original, model, cid, original_dir)
    kept = [n for n in model.config.present_names if n != forgotten]
    if oracle_dir is not None:
        oracle = PreForgettableModel.from_pretrained(oracle_dir, device=device)
        check_oracle(oracle, forgotten, kept, oracle_dir)
    else:  # never saw the forgotten class, nor any class the model had forgotten before
        absent = [n for n in model.config.class_names if n not in kept]
        oracle = train_oracle(model, data, absent, device=device, backbone_state=backbone_state)
    if str(cid) in model.prompts:
        before, deleted = model, model.prompts[str(cid)].detach().clone()
        with tempfile.TemporaryDirectory() as tmp:
            forget_checkpoint(model_dir, [forgotten], out=Path(tmp) / "forgotten")
            after = PreForgettableModel.from_pretrained(Path(tmp) / "forgotten", device=device)
            hygiene = checkpoint_hygiene(Path(tmp) / "forgotten", cid, deleted)
    else:
        after = model
        before = original
        deleted = before.prompts[str(cid)].detach().clone() if before and str(cid) in before.prompts else None
        hygiene = checkpoint_hygiene(model_dir, cid, deleted)
    return audit_forgetting(
        after,
        oracle,
        train=train,
        holdout=holdout,
        forgotten=forgotten,
        before=before,
        hygiene=hygiene,
        seed=seed,
        relearn_steps=relearn_steps,
    )
