"""Tools for testing ingestd under failure: the TCP fault proxy (:mod:`.faultproxy`) and a
database that hangs (:mod:`.silent`)."""
