"""Webhooks: every mail event as a signed HTTP POST, and the library that receives them.

Sending (the server side): events are written to an outbox in the transaction
that reports them, and a dispatcher drains it to the configured endpoints.

Receiving (the application side): :mod:`mailstead.webhooks.receiver` verifies,
deduplicates and dispatches deliveries to handlers registered by event name;
:mod:`mailstead.webhooks.adapters` plugs it into Django, Flask, Tornado and
ASGI. :mod:`mailstead.webhooks.signing` is the Standard Webhooks signature
both sides share.

This package module imports nothing, so an application can import the
receiver with the standard library alone (docs/webhooks.md, "Receiving").
"""
