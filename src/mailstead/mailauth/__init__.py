"""Mail authentication: what proves where a message comes from.

DKIM signing (RFC 6376) and the DNS records a domain publishes for MX,
SPF, DKIM and DMARC; the verification of incoming mail — SPF (``spf``,
``spf_macro``), every DKIM signature (``dkim_verify``), DMARC (``dmarc``)
— with Authentication-Results (RFC 8601, ``authresults``) as its output;
and the check hook every check on incoming mail goes through (``hook``);
ARC (``arc``, ``arc_seal``); rate limits, DNS block lists and greylisting
(``abuse`` and its parts).

Importing the package makes dkimpy's RSA OpenSSL's (``rsa``): its own is
written in Python and was half of what checking a signed message cost;
and its per-message parsing faster, with the same results
(``dkimpy_speedups``).
"""

from mailstead.mailauth import dkimpy_speedups, rsa

rsa.install()
dkimpy_speedups.install()
