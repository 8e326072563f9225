"""The host's side of running the server: privileges, the lock, systemd.

``privileges`` turns a root start into the ``[run]`` account (or drops the
one capability a systemd start was given); ``lock`` keeps a second
``serve`` off a data directory; ``sdnotify`` tells systemd when the server
is ready, reloading or stopping; ``unit`` writes the service file that
``mailstead init --system`` installs.
"""
