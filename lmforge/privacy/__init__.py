"""Privacy and security (issue 18): encrypted artefacts (:mod:`.crypto`, :mod:`.keys`,
:mod:`.encrypted_io`), PII detection and de-identification (:mod:`.pii`), DP-SGD through
Opacus (:mod:`.dp`) and the membership-inference attack that measures it
(:mod:`.membership`). The adversarial-text defences live in the cleaning layer
(:mod:`lmforge.data.normalize_adversarial`) and the attacks in :mod:`lmforge.eval.attacks`."""
