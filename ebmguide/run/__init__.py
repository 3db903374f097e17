"""The config-driven application above the library: what ``ebmguide train`` and friends run.

- :mod:`~ebmguide.run.config`, :mod:`~ebmguide.run.config_schema`: TOML configurations
- :mod:`~ebmguide.run.imports`: user code named by import path in a configuration
- :mod:`~ebmguide.run.components`, :mod:`~ebmguide.run.training_data`: building a run's parts
- :mod:`~ebmguide.run.trainer`: the :class:`~ebmguide.run.trainer.Trainer` and its loop
- :mod:`~ebmguide.run.divergence`, :mod:`~ebmguide.run.movement`: the guard and sampler health
- :mod:`~ebmguide.run.checkpoints`, :mod:`~ebmguide.run.folder`: checkpoints and the run folder
- :mod:`~ebmguide.run.rank_hooks`: what differs under torchrun
- :mod:`~ebmguide.run.evaluator`, :mod:`~ebmguide.run.real_sets`,
  :mod:`~ebmguide.run.checkpoint_evaluation`: scoring samples during and after training
- :mod:`~ebmguide.run.conditions`: conditions for ``sample --condition`` and ``compose``
- :mod:`~ebmguide.run.logger`, :mod:`~ebmguide.run.progress`, :mod:`~ebmguide.run.interrupt`:
  logs, progress and stopping on signals

The library below (``ebmguide.*`` outside ``run`` and ``cli``) imports nothing from here.
"""
