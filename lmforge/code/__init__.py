"""Code completion: Python files split by file (:mod:`.data`), fill-in-the-middle
training (:mod:`.fim`, :mod:`.batches`), the ``task: code`` recipe (:mod:`.recipe`,
:mod:`.finetune`), held-out metrics (:mod:`.metrics`) and completion at a cursor
(:mod:`.complete`, ``lmforge complete``)."""
