"""Diagnose: rules that turn measurements into findings.

- ``checktime/``: check-time rules, run by ``gd.check`` (``checkup``): the static audit
  of the model map (``static``) and the judgement of the init probe (``probe_rules``);
- ``training/``: training-time rules over watch's records, run by ``Watcher.report``
  and ``build_report`` (``watching``);
- ``thresholds``: the thresholds several rules (and the remedies) share, with their papers.

Every rule receives what it judges (a model map, a probe result, run records) and
never calls back into the verb that runs it.
"""
