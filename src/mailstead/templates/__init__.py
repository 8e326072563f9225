"""HTML e-mail templates: rendering, and the text part derived from the HTML.

Inlining CSS and linting against what each mail client supports join them
here (see docs/architecture.md).
"""
