"""The control socket: talking to the running ``serve`` (``mailstead status``, ``stop`` …).

* protocol.py — the wire format, sans-IO: one JSON request line, one JSON reply line;
* address.py — ``<data_dir>/control.sock``, binding and connecting;
* server.py — the thread in the supervisor that answers, and who may connect;
* commands.py — what each command does in the supervisor;
* board.py — the worker processes' pids and states, shared with the supervisor;
* (the live sessions and the queue for ``status`` come from ``metrics``);
* wake.py — telling every mail worker to look at the queue now (``queue flush``);
* client.py — :func:`~mailstead.control.client.request`, for the commands.
"""
