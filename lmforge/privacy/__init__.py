"""Privacy and security: encrypted artefacts (:mod:`.crypto`, :mod:`.keys`). PII recognizers
and operators, DP-SGD wiring and the adversarial-text defences are the rest of issue 18."""
