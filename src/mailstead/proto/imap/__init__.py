"""IMAP4rev2 / IMAP4rev1 (RFC 9051, RFC 3501), sans-IO."""
