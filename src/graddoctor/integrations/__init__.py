"""Where people train: callbacks that run ``gd.watch`` inside a framework's loop.

- ``graddoctor.integrations.lightning.GradDoctorCallback``: a Lightning ``Callback``
  (``lightning`` or ``pytorch_lightning``);
- ``graddoctor.integrations.transformers.GradDoctorCallback``: a Hugging Face ``TrainerCallback``.

Both read the gradients where the framework says they are final for the step (after
accumulation, AMP unscaling and the DDP all-reduce, before clipping) and offer ``.report()``
and ``.records()`` like ``gd.watch``. The frameworks are imported only by their own module.
"""
