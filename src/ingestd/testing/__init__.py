"""Tools for testing ingestd under failure: the TCP fault proxy (:mod:`.faultproxy`)."""
