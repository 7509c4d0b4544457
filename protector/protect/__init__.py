"""One-shot protection of photos through ``trainer.predict``.

Modules, one job each: :mod:`~protector.protect.naming` (output names),
:mod:`~protector.protect.plan` (inputs, outputs, collisions, sizes),
:mod:`~protector.protect.dataset` and :mod:`~protector.protect.batching` (decoding and
same-size batches), :mod:`~protector.protect.loading`, :mod:`~protector.protect.tiling`
(very large photos), :mod:`~protector.protect.predictor` (the LightningModule),
:mod:`~protector.protect.writer` (files and checks), :mod:`~protector.protect.provenance`
(what made the files in the output folder), :mod:`~protector.protect.manifest`,
:mod:`~protector.protect.submission` (the zip), :mod:`~protector.protect.summary`,
:mod:`~protector.protect.run` (the whole run).
"""

from protector.protect.run import ProtectOptions, protect
from protector.protect.summary import RunSummary

__all__ = ["ProtectOptions", "RunSummary", "protect"]
