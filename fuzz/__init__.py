"""Coverage-guided fuzz targets for Mailstead's parsers (atheris / libFuzzer).

One module per parser, each with ``test_one_input(data)`` and ``main()``;
``python -m fuzz.run`` runs them all. See ``fuzz/README.md``.
"""
