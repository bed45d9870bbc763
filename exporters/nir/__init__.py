"""The NIR target: ``export`` (the file, checked by reading it back), ``layout`` (records to
NIR nodes), ``simulator`` (NIR's own semantics, the reference) and the libraries that read
NIR: ``consumers``, ``consumer_limits`` and ``consumer_runner`` (a script run beside them)."""
