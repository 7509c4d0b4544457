"""The evaluation: `protector evaluate` (:mod:`~protector.evaluation.run`, with its report in
:mod:`~protector.evaluation.report`) and `protector accuracy` (:mod:`~protector.evaluation.accuracy`),
and their parts: pairing files, scoring, fidelity, baselines, aggregation, leakage, plots."""
