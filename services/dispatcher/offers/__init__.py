"""Exclusive offers in messages: unique codes drawn from uploaded pools, or signed codes
(:mod:`shared.offers`), one per dispatch, announced as ``Coupon Issued`` events."""
