"""Building messages: the trace header fields added on receipt and delivery."""
