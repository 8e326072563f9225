"""Checks an operator runs before and after going live: ``mailstead check config|dns``.

* :mod:`~mailstead.checks.config` reads the configuration the way ``serve``
  does and reports every problem, not only the first: the keys the loader
  refuses, the TLS certificate and key (:mod:`~mailstead.checks.tls`), the
  listening addresses, the outbound source addresses.
* :mod:`~mailstead.checks.dns` asks the DNS (through ``[delivery]
  dns_servers``) whether a domain is published the way ``mailstead
  dns-records`` says it should be; SPF is evaluated by
  :mod:`~mailstead.checks.spf`, the tag-list records parsed by
  :mod:`~mailstead.checks.tags`.

Nothing here prints: the command line (``cli/check.py``) renders the reports.
docs/checks.md documents every check and the ``--json`` shapes.
"""
