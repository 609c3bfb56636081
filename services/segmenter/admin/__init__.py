"""What the admin API does, one module per resource: the routes in :mod:`..api` call
these functions, which compose the transactions and raise :mod:`..errors`."""
