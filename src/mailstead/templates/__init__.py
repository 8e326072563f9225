"""HTML e-mail templates: render, inline, text part, lint, preview.

``pipeline.EmailTemplate`` runs the stages in order: ``render`` (Jinja2,
files read by ``source``), ``mjml``, ``inline`` (CSS), ``images`` (cid:
parts) and ``text`` (the text/plain alternative, laid out by ``plain``);
``shapes`` and ``planned`` do once per shape of the markup what a
recipient's values do not change; ``variables`` reads ``--data``.
``lint`` checks the result against what each mail client supports,
``preview`` screenshots it (see docs/templates.md).
"""
