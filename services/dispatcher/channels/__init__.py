"""The providers a message goes out through, one small interface (:class:`Provider`)."""
