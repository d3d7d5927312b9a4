"""Training: `bench train` and what makes a reference model.

train.py         stage 1 (the autoencoder or any image model) and stage 2 (a trainable latent prior)
step.py          one optimisation step, and what makes it fast on a GPU (issue 21)
legs.py          training in legs: a run that starts from a trained model's EMA weights
x0_diagnostic.py the high-t x0 diagnostic logged while training (issue 21)
export.py        a trained run -> a small committable reference model and its manifest entry
"""
