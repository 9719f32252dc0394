"""``lmforge compress``: the workflow around the methods of :mod:`lmforge.compress`.

It sits above the recipe layer (it rebuilds the parent run's data and objective from its
recipe), so it lives apart from the methods, which know nothing of recipes:
:mod:`.parent` (the model a compression starts from), :mod:`.command` (the command),
:mod:`.methods` (each method's steps).
"""
