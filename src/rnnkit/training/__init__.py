"""Training on Lightning: typed configs with dotted overrides, LightningModules for rnnkit's
models, resumable sharded loaders, atomic safetensors checkpoints, callbacks, figures, and the
run driver behind ``rnnkit train``.

Imports Lightning and matplotlib, so import the submodules you need
(``rnnkit.training.config`` has no heavy dependency).
"""
