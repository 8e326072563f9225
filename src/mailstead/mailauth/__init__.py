"""Mail authentication: what proves where a message comes from.

DKIM signing (RFC 6376) and the DNS records a domain publishes for MX,
SPF, DKIM and DMARC live here now; DKIM verification, ARC, SPF and DMARC
checks join them, with Authentication-Results (RFC 8601) as their output.
"""
