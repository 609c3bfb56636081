"""Recommendations' pure parts, like :mod:`..scoring`: the item-to-item model
(:mod:`.model`) and the fold of a batch's events into interactions (:mod:`.fold`).
No I/O here: the store is :mod:`..repository.recommendations`, the job
:mod:`..recommend_job`, the routes :mod:`..api.recommendations`."""
