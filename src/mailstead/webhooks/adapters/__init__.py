"""Framework adapters for :class:`mailstead.webhooks.receiver.WebhookRouter`.

One module per framework, each importing its framework only when imported
itself, so installing one extra (``pip install 'mailstead[flask]'``) is
enough for its adapter. Every adapter answers the same way (see
:meth:`WebhookRouter.reply`): 200 with ``{"status": "handled" | "duplicate" |
"ignored"}``, 401 for a failed signature or timestamp, 400 for a body that
is not an event, 413 for one too large, 500 when a handler raised (the
sender retries), 405 for a method other than POST.
"""
