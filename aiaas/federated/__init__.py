"""Federated learning on Flower, driven by the same SPEC as `aiaas train`.

The train SPEC says what to learn (model, data, loss, optimizer, batch size,
seed); a `[federated]` section says how the federation runs (rounds, strategy,
client sampling, privacy). Flower does the federating: its strategies,
differential-privacy wrappers and mods, its simulation engine and its
SuperLink/SuperNode processes. This package builds the ServerApp and ClientApp
from the SPEC, partitions data, keeps the run directory (per-round metrics,
checkpoints, plot) and publishes the final model the way `aiaas train` does.
"""
