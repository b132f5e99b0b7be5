"""Targeted adversarial poisoning moves images to the permuted class for the surrogate, inside the eps-ball."""

import numpy as np
import torch
from sklearn.datasets import load_digits

from unlearnable.adv import AdversarialPoison
from unlearnable.bank import PerturbationBank
from unlearnable.surrogates import create_surrogate


def test_poisoned_digits_read_as_the_next_class_while_originals_read_as_their_own():
    torch.manual_seed(0)
    digits = load_digits(n_class=4)
    x = np.repeat((digits.images[:240] * 255 / 16).round().astype(np.uint8)[..., None], 3, axis=-1)
    y = torch.as_tensor(digits.target[:240])
    sur = create_surrogate("scratch", num_classes=4, device=torch.device("cpu"), size=8, width=8)
    bank = PerturbationBank(list(x), size=8, eps_levels=48)
    AdversarialPoison(surrogate=sur, steps=12, step_levels=8, batch_size=64, warmup_epochs=60).perturb(
        bank, y
    )
    prot = np.stack([bank.protected(i) for i in range(len(x))])
    assert np.abs(prot.astype(int) - x).max() <= 48
    with torch.no_grad():
        clean = sur.logits(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1)
        poisoned = sur.logits(torch.from_numpy(prot).permute(0, 3, 1, 2).float() / 255).argmax(1)
    assert float((clean == y).float().mean()) > 0.75
    assert float((poisoned == (y + 1) % 4).float().mean()) > 0.8
